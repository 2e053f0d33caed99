//! The I/O driver: moving bytes between sockets, independent of what the bytes mean.
//!
//! Protocol engines never read or write sockets in loops of their own for plain forwarding;
//! they call [`pump::pump`]. That is the seam for a second driver: an io_uring implementation
//! (tokio-uring, a later issue) provides the same `pump` over its own socket type and the
//! worker picks the driver when it builds its runtime, falling back to this epoll driver where
//! io_uring is refused (Docker's default seccomp profile, kernels with it disabled). Codecs
//! stay sans-IO and are not touched by either.
//!
//! This driver is tokio's epoll reactor on a current-thread runtime, one per worker.

pub mod buffers;
pub mod clock;
pub mod counted;
pub mod detach;
pub mod notify;
pub mod pump;
pub mod readbuf;
pub mod splice;
