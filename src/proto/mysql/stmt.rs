//! Prepared statements of one session: the ids the client sees, mapped to each backend's own
//! ids. A statement is prepared where it is first routed and again, silently, on the other
//! backend the first time it is executed there (its text is kept for that). Parameter types
//! are remembered from the execute that bound them, and put back into an execute sent to a
//! backend that has not seen them yet (clients send types only once per statement).
//!
//! Also the byte surgery on COM_STMT_* packets: the statement id and the parameter types.
//!
//! Not here: routing (`super::session`) and I/O.

use std::collections::BTreeMap;

use super::classify::Class;

/// A backend of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Primary = 0,
    Replica = 1,
}

/// Statements a session may hold (MySQL's `max_prepared_stmt_count` is per server; this
/// bounds one client).
pub const MAX_STATEMENTS: usize = 16 * 1024;

/// The id MariaDB clients use for "the statement just prepared".
pub const LAST_PREPARED: u32 = u32::MAX;

#[derive(Debug)]
pub struct Stmt {
    /// The COM_STMT_PREPARE payload (command byte and text).
    pub prepare: Box<[u8]>,
    pub class: Class,
    pub params: u16,
    /// The id on each backend it is prepared on.
    pub on: [Option<u32>; 2],
    /// Whether that backend has been sent the parameter types.
    pub typed: [bool; 2],
    /// The types from the client's last execute that bound them (2 bytes per parameter).
    pub types: Option<Box<[u8]>>,
    /// Where it last ran (COM_STMT_FETCH reads its cursor there).
    pub last: Option<Role>,
    /// Where long data was sent since the last execute (the execute must go there).
    pub long_data: Option<Role>,
}

#[derive(Debug, Default)]
pub struct Stmts {
    /// By client id. A B-tree: ids are small and sequential, lookups need no hashing, and an
    /// empty one is 24 bytes (a parked session keeps it, `super::session::park`).
    map: BTreeMap<u32, Stmt>,
    next: u32,
    last_prepared: Option<u32>,
}

impl Stmts {
    /// Registers a statement just prepared on `role` as `backend_id`; returns the client's id.
    pub fn add(
        &mut self,
        prepare: &[u8],
        class: Class,
        params: u16,
        role: Role,
        backend_id: u32,
    ) -> u32 {
        self.next = self.next.wrapping_add(1);
        if self.next == 0 || self.next == LAST_PREPARED {
            self.next = 1;
        }
        let id = self.next;
        let mut on = [None, None];
        on[role as usize] = Some(backend_id);
        self.map.insert(
            id,
            Stmt {
                prepare: prepare.into(),
                class,
                params,
                on,
                typed: [false; 2],
                types: None,
                last: None,
                long_data: None,
            },
        );
        self.last_prepared = Some(id);
        id
    }

    /// A prepare failed: "the statement just prepared" is none (MariaDB's rule), so a
    /// pipelined execute of it fails instead of running the previous statement.
    pub fn prepare_failed(&mut self) {
        self.last_prepared = None;
    }

    pub fn is_full(&self) -> bool {
        self.map.len() >= MAX_STATEMENTS
    }

    /// The id the next statement will get (known before the backend's reply is forwarded).
    pub fn peek_next(&self) -> u32 {
        let n = self.next.wrapping_add(1);
        if n == 0 || n == LAST_PREPARED { 1 } else { n }
    }

    /// Resolves [`LAST_PREPARED`].
    pub fn resolve(&self, id: u32) -> u32 {
        if id == LAST_PREPARED {
            self.last_prepared.unwrap_or(id)
        } else {
            id
        }
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Stmt> {
        self.map.get_mut(&self.resolve(id))
    }

    pub fn remove(&mut self, id: u32) -> Option<Stmt> {
        let id = self.resolve(id);
        if self.last_prepared == Some(id) {
            self.last_prepared = None;
        }
        self.map.remove(&id)
    }

    /// A backend connection went away: nothing is prepared there any more.
    pub fn forget(&mut self, role: Role) {
        for s in self.map.values_mut() {
            s.on[role as usize] = None;
            s.typed[role as usize] = false;
            if s.last == Some(role) {
                s.last = None;
            }
            if s.long_data == Some(role) {
                s.long_data = None;
            }
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.last_prepared = None;
    }
}

/// The statement id of a COM_STMT_* payload (after the command byte).
pub fn id_of(payload: &[u8]) -> Option<u32> {
    let b = payload.get(1..5)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Sets the statement id of a COM_STMT_* payload.
pub fn set_id(payload: &mut [u8], id: u32) {
    if let Some(b) = payload.get_mut(1..5) {
        b.copy_from_slice(&id.to_le_bytes());
    }
}

/// A copy of a COM_STMT_* payload carrying statement id `id`.
pub fn with_id(payload: &[u8], id: u32) -> Vec<u8> {
    let mut p = payload.to_vec();
    set_id(&mut p, id);
    p
}

/// Where the parameter types of a COM_STMT_EXECUTE payload are: the offset of the
/// `new_params_bound` flag. `None` if there are no parameters or the packet is too short.
fn bound_flag_at(payload: &[u8], params: u16) -> Option<usize> {
    if params == 0 {
        return None;
    }
    // command, id (4), flags, iteration count (4), NULL bitmap.
    let at = 10 + usize::from(params).div_ceil(8);
    (at < payload.len()).then_some(at)
}

/// The types a COM_STMT_EXECUTE payload binds, if it binds them.
pub fn bound_types(payload: &[u8], params: u16) -> Option<&[u8]> {
    let at = bound_flag_at(payload, params)?;
    if payload[at] != 1 {
        return None;
    }
    payload.get(at + 1..at + 1 + 2 * usize::from(params))
}

/// A COM_STMT_EXECUTE payload that sends no types, with `types` put in. `None` if it already
/// binds types (or has no parameters): it goes as it is.
pub fn with_types(payload: &[u8], params: u16, types: &[u8]) -> Option<Vec<u8>> {
    let at = bound_flag_at(payload, params)?;
    if payload[at] != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() + types.len());
    out.extend_from_slice(&payload[..at]);
    out.push(1);
    out.extend_from_slice(types);
    out.extend_from_slice(&payload[at + 1..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mysql::classify::classify;

    /// A COM_STMT_EXECUTE of statement 1 with two parameters (an INT 5 and a string "ab"),
    /// types bound, as libmariadb sends it.
    fn execute(bound: bool) -> Vec<u8> {
        let mut p = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0b00];
        if bound {
            p.extend_from_slice(&[1, 3, 0, 0xFE, 0]);
        } else {
            p.push(0);
        }
        p.extend_from_slice(&[5, 0, 0, 0, 2, b'a', b'b']);
        p
    }

    #[test]
    fn types_are_read_and_put_back() {
        let bound = execute(true);
        assert_eq!(bound_types(&bound, 2), Some(&[3, 0, 0xFE, 0][..]));
        let unbound = execute(false);
        assert_eq!(bound_types(&unbound, 2), None);
        assert_eq!(
            with_types(&unbound, 2, &[3, 0, 0xFE, 0]),
            Some(bound.clone())
        );
        assert_eq!(with_types(&bound, 2, &[3, 0, 0xFE, 0]), None);
        assert_eq!(with_types(&unbound, 0, &[]), None);
        // Every prefix: no panic.
        for n in 0..bound.len() {
            let _ = bound_types(&bound[..n], 2);
            let _ = with_types(&bound[..n], 2, &[3, 0, 0xFE, 0]);
            let _ = id_of(&bound[..n]);
        }
    }

    #[test]
    fn ids_map_per_backend() {
        let mut s = Stmts::default();
        let c = classify(b"SELECT ?");
        assert_eq!(s.peek_next(), 1);
        let a = s.add(b"\x16SELECT ?", c, 1, Role::Replica, 77);
        assert_eq!(a, 1);
        assert_eq!(s.resolve(LAST_PREPARED), 1);
        let st = s.get_mut(a).unwrap();
        assert_eq!(st.on, [None, Some(77)]);
        st.on[0] = Some(5);
        st.last = Some(Role::Replica);
        s.forget(Role::Replica);
        let st = s.get_mut(a).unwrap();
        assert_eq!(st.on, [Some(5), None]);
        assert_eq!(st.last, None);
        let mut p = execute(true);
        assert_eq!(id_of(&p), Some(1));
        set_id(&mut p, 9);
        assert_eq!(id_of(&p), Some(9));
        assert!(s.remove(a).is_some());
        assert!(s.get_mut(LAST_PREPARED).is_none());
        // A failed prepare leaves no "last prepared" statement to run by mistake.
        let b = s.add(b"\x16SELECT 1", c, 0, Role::Primary, 3);
        assert!(s.get_mut(LAST_PREPARED).is_some());
        s.prepare_failed();
        assert!(s.get_mut(LAST_PREPARED).is_none());
        assert!(s.get_mut(b).is_some());
    }
}
