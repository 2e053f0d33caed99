//! memcached ASCII engine: codec here, session driver later.

pub mod codec;
