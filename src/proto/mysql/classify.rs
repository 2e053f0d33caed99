//! Statement classification for read/write splitting: [`classify`] decides from the text of
//! a COM_QUERY or COM_STMT_PREPARE where a MySQL/MariaDB statement may run ([`Route`]), and
//! reads a routing hint (`/* corelane:primary */`, `/* corelane:replica */`) from the
//! comments before it.
//!
//! How: a byte-level tokenizer (whitespace; `/* */`, `-- ` and `#` comments; quoted strings
//! and identifiers; `@user` and `@@system` variables), a look at the first keywords, and one
//! scan of the rest for what makes a read unsafe on a replica (locking clauses, functions
//! with side effects, user variables). No allocation. Executable comments (`/*! */`,
//! `/*!50001 */`, `/*M!100101 */`) are code whatever version they name.
//!
//! Not here: a SQL parser (invalid SQL gets some route, never a panic, and anything not
//! recognised goes to the primary); the transaction state (the engine's, from the server's
//! status flags); the sql_modes `NO_BACKSLASH_ESCAPES` (a backslash always escapes here) and
//! `ANSI_QUOTES` (`"..."` is always a string, which classifies as an identifier would).
//! Compound statements (`CREATE PROCEDURE ... BEGIN ...; ...; END`) look like several
//! statements and so go to the primary, pinning when a part would.

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A read that a replica may serve when the session is not in a transaction: SELECT
    /// (also `(SELECT ...)`, `WITH ... SELECT`, `TABLE t`, `VALUES ...`), most SHOW,
    /// DESC/DESCRIBE/EXPLAIN (not EXPLAIN ANALYZE).
    Read,
    /// Must run on the primary: writes, DDL, transaction control, SELECTs that lock or have
    /// side effects, several statements at once, and everything not recognised or empty.
    Write,
    /// Primary, and the session stays pinned to the primary until it ends: temporary
    /// tables, LOCK TABLES, statements that read or assign user variables (other than SET).
    Pin,
    /// Changes session state (`SET NAMES`, `SET @x = 1`, `SET SESSION ...`): run on every
    /// backend connection and replayed on ones opened later.
    Session,
    /// `USE db`: the session's default database changes.
    Use,
    /// `START TRANSACTION READ ONLY`: a replica may serve the whole transaction.
    BeginReadOnly,
    /// COMMIT, ROLLBACK (also `ROLLBACK TO SAVEPOINT`), SAVEPOINT, RELEASE SAVEPOINT: goes
    /// wherever the transaction is.
    EndTransaction,
    /// SHOW WARNINGS/ERRORS, `SELECT @@warning_count`: to the backend that ran the previous
    /// statement.
    Previous,
    /// `KILL`, alone or among several statements: refused, since its connection id would be
    /// corelane's, which means another connection (or none) on a server.
    Kill,
}

/// A routing hint in a comment before the statement: `/* corelane:primary */` or
/// `/* corelane:replica */` (any comment form, whitespace allowed, case-insensitive; only
/// comments before the first token count, and the first hint wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Primary,
    Replica,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    pub route: Route,
    pub hint: Option<Hint>,
    /// It may open a transaction: BEGIN, START TRANSACTION, XA START, `SET autocommit`, CALL,
    /// or several statements. (When such a statement fails, its ERR carries no status flags
    /// to say whether it did.)
    pub opens: bool,
}

/// Classifies one COM_QUERY / COM_STMT_PREPARE text.
pub fn classify(sql: &[u8]) -> Class {
    use Route::*;
    let mut lx = Lexer::new(sql);
    let pins = |(r, txn)| txn || matches!(r, Pin | Session | Use | BeginReadOnly);
    let first = statement(&mut lx);
    let mut route = first.0;
    let mut opens = first.1;
    if lx.next_statement() {
        opens = true;
        // Several statements: Pin when any would change the session or start a transaction.
        let mut pinned = pins(first);
        let mut kill = first.0 == Kill;
        loop {
            let next = statement(&mut lx);
            pinned |= pins(next);
            kill |= next.0 == Kill;
            if !lx.next_statement() {
                break;
            }
        }
        route = if kill {
            Kill
        } else if pinned {
            Pin
        } else {
            Write
        };
    }
    if lx.truncated && !matches!(route, Pin | Kill) {
        route = Write;
    }
    Class {
        route,
        hint: lx.hint,
        opens,
    }
}

/// Functions whose call makes a SELECT run on the primary.
const WRITE_FUNCS: &[&str] = &[
    "GET_LOCK",
    "RELEASE_LOCK",
    "RELEASE_ALL_LOCKS",
    "IS_FREE_LOCK",
    "IS_USED_LOCK",
    "LAST_INSERT_ID",
    "FOUND_ROWS",
    "ROW_COUNT",
    "NEXTVAL",
    "LASTVAL",
    "SETVAL",
];
/// System variables that only the primary's connection knows.
const WRITE_VARS: &[&str] = &["identity", "last_insert_id", "last_gtid"];
/// System variables about the previous statement.
const PREVIOUS_VARS: &[&str] = &["warning_count", "error_count"];
const SELECTS: &[&str] = &["SELECT", "WITH", "VALUES", "TABLE"];

/// Classifies one statement up to its `;` or the end, consuming it; the flag says it starts a
/// transaction (BEGIN, START TRANSACTION, XA START, SET autocommit).
fn statement(lx: &mut Lexer) -> (Route, bool) {
    let w: &[u8] = match lx.tok() {
        Some(Tok::Word(w)) => w,
        Some(Tok::Punct(b'(')) => return (parenthesised(lx), false),
        _ => b"",
    };
    if any(w, SELECTS) {
        return (select_route(scan(lx)), false);
    }
    if kw(w, "SET") {
        return set(lx);
    }
    let mut txn = false;
    let route = if kw(w, "SHOW") {
        show(lx)
    } else if any(w, &["DESC", "DESCRIBE", "EXPLAIN"]) {
        match lx.peek() {
            Some(Tok::Word(n)) if kw(n, "ANALYZE") => Route::Write,
            _ => Route::Read,
        }
    } else if any(w, &["COMMIT", "ROLLBACK", "SAVEPOINT"])
        || (kw(w, "RELEASE") && word_is(lx.peek(), "SAVEPOINT"))
    {
        Route::EndTransaction
    } else if kw(w, "USE") {
        Route::Use
    } else if kw(w, "LOCK") {
        Route::Pin
    } else if kw(w, "CREATE") {
        let mut next = lx.tok();
        if word_is(next, "OR") {
            lx.tok(); // REPLACE
            next = lx.tok();
        }
        if word_is(next, "TEMPORARY") {
            Route::Pin
        } else {
            Route::Write
        }
    } else if kw(w, "BEGIN") {
        txn = true;
        Route::Write
    } else if kw(w, "START") {
        txn = word_is(lx.tok(), "TRANSACTION");
        if txn && read_only(lx) {
            Route::BeginReadOnly
        } else {
            Route::Write
        }
    } else if kw(w, "KILL") {
        Route::Kill
    } else if kw(w, "CALL") {
        txn = true; // a procedure may leave a transaction open
        Route::Write
    } else if kw(w, "XA") {
        let t = lx.tok();
        txn = word_is(t, "START") || word_is(t, "BEGIN");
        Route::Write
    } else {
        Route::Write
    };
    let f = scan(lx);
    let route = if f.user_var {
        Route::Pin
    } else if route == Route::Read && f.for_connection {
        Route::Write // EXPLAIN FOR CONNECTION n: a connection id means one server
    } else {
        route
    };
    (route, txn)
}

/// The modifiers of START TRANSACTION say READ ONLY and not READ WRITE.
fn read_only(lx: &mut Lexer) -> bool {
    let (mut only, mut write, mut after_read) = (false, false, false);
    while let Some(t) = lx.tok() {
        only |= after_read && word_is(Some(t), "ONLY");
        write |= after_read && word_is(Some(t), "WRITE");
        after_read = word_is(Some(t), "READ");
    }
    only && !write
}

/// After a leading `(`: `((SELECT 1))` is a SELECT; anything else is not recognised.
fn parenthesised(lx: &mut Lexer) -> Route {
    loop {
        match lx.tok() {
            Some(Tok::Punct(b'(')) => {}
            Some(Tok::Word(w)) if any(w, SELECTS) => return select_route(scan(lx)),
            _ => {
                let f = scan(lx);
                return if f.user_var { Route::Pin } else { Route::Write };
            }
        }
    }
}

fn select_route(f: Features) -> Route {
    if f.user_var {
        Route::Pin
    } else if f.previous {
        Route::Previous
    } else if f.write {
        Route::Write
    } else {
        Route::Read
    }
}

/// `SHOW ...`, the keyword already read.
fn show(lx: &mut Lexer) -> Route {
    let Some(Tok::Word(w)) = lx.tok() else {
        return Route::Write;
    };
    if any(w, &["WARNINGS", "ERRORS"]) {
        Route::Previous
    } else if kw(w, "COUNT") {
        // SHOW COUNT(*) WARNINGS
        loop {
            match lx.tok() {
                Some(Tok::Word(w)) if any(w, &["WARNINGS", "ERRORS"]) => return Route::Previous,
                Some(Tok::Word(_)) => return Route::Read,
                Some(_) => {}
                None => return Route::Write,
            }
        }
    } else if any(w, &["MASTER", "BINLOG", "BINARY", "REPLICAS"])
        || (kw(w, "SLAVE") && word_is(lx.peek(), "HOSTS"))
    {
        Route::Write // the primary's binary log, or its replicas
    } else {
        Route::Read
    }
}

/// `SET ...`, the keyword already read. Session; Write for global variables, autocommit,
/// `SET TRANSACTION`, PASSWORD, STATEMENT ... FOR; Pin when it mixes both, or when a session
/// assignment's value has side effects or reads data (replayed, it would not give the same).
fn set(lx: &mut Lexer) -> (Route, bool) {
    let targets = set_targets(&mut lx.clone());
    let f = scan(lx);
    let Some(t) = targets else {
        return (Route::Write, false);
    };
    let route = match (t.session, t.write) {
        (true, true) => Route::Pin,
        (false, true) => Route::Write,
        (true, false) if f.write || f.select || f.previous => Route::Pin,
        (true, false) => Route::Session,
        (false, false) => Route::Write,
    };
    (route, t.autocommit)
}

#[derive(Default)]
struct SetTargets {
    session: bool,
    write: bool,
    autocommit: bool,
}

/// What the assignments of a SET change; `None` when not understood.
fn set_targets(p: &mut Lexer) -> Option<SetTargets> {
    let mut t = SetTargets::default();
    // GLOBAL or SESSION carries on to later assignments without one: Some(true) is global.
    let mut global = None;
    loop {
        let mut tok = p.tok()?;
        if let Tok::Word(w) = tok {
            if any(w, &["GLOBAL", "PERSIST", "PERSIST_ONLY"]) {
                global = Some(true);
                tok = p.tok()?;
            } else if any(w, &["SESSION", "LOCAL"]) {
                global = Some(false);
                tok = p.tok()?;
            }
        }
        let mut needs_eq = true;
        let (write, name): (bool, &[u8]) = match tok {
            Tok::Word(w) if kw(w, "TRANSACTION") => {
                // Without SESSION it is about the next transaction only.
                t.session |= global == Some(false);
                t.write |= global != Some(false);
                return Some(t);
            }
            Tok::Word(w) if any(w, &["PASSWORD", "STATEMENT"]) => return None,
            Tok::Word(w) if kw(w, "ROLE") => {
                t.session = true;
                return Some(t);
            }
            Tok::Word(w) if any(w, &["NAMES", "CHARSET"]) => {
                needs_eq = false;
                (false, b"")
            }
            Tok::Word(w) if kw(w, "CHARACTER") && word_is(p.peek(), "SET") => {
                p.tok();
                needs_eq = false;
                (false, b"")
            }
            Tok::UserVar => (false, b""),
            Tok::SysVar(v) => split_scope(v),
            Tok::Word(mut w) => {
                // keycache.key_buffer_size
                while p.peek() == Some(Tok::Punct(b'.')) {
                    p.tok();
                    match p.tok()? {
                        Tok::Word(n) => w = n,
                        _ => return None,
                    }
                }
                (global == Some(true), w)
            }
            _ => return None,
        };
        let autocommit = kw(name, "autocommit");
        t.autocommit |= autocommit;
        if write || autocommit {
            t.write = true;
        } else {
            t.session = true;
        }
        if needs_eq {
            match p.tok()? {
                Tok::Punct(b'=') => {}
                Tok::Punct(b':') if p.tok()? == Tok::Punct(b'=') => {}
                _ => return None,
            }
        }
        // The value, up to a comma outside parentheses.
        let mut depth = 0u32;
        loop {
            match p.tok() {
                None => return Some(t),
                Some(Tok::Punct(b'(')) => depth += 1,
                Some(Tok::Punct(b')')) => depth = depth.saturating_sub(1),
                Some(Tok::Punct(b',')) if depth == 0 => break,
                Some(_) => {}
            }
        }
    }
}

/// `global.x` -> (true, `x`); `session.x`, `local.x` -> (false, `x`); `x` -> (false, `x`).
fn split_scope(v: &[u8]) -> (bool, &[u8]) {
    if let Some(dot) = v.iter().position(|&b| b == b'.') {
        let (scope, rest) = (&v[..dot], &v[dot + 1..]);
        if any(scope, &["global", "persist", "persist_only"]) {
            return (true, rest);
        }
        if any(scope, &["session", "local"]) {
            return (false, rest);
        }
    }
    (false, v)
}

/// What the rest of a statement mentions.
#[derive(Debug, Default, Clone, Copy)]
struct Features {
    /// `@name`: reads or assigns a user variable.
    user_var: bool,
    /// Locks, side effects, connection-bound state, INTO, DML.
    write: bool,
    /// `@@warning_count`, `@@error_count`.
    previous: bool,
    /// A SELECT keyword (a subquery).
    select: bool,
    /// `FOR CONNECTION`.
    for_connection: bool,
}

/// Reads the statement to its end, noting [`Features`]. Looks at each word with the token
/// after it, so `name (` is a call and a column `found_rows` is not.
fn scan(lx: &mut Lexer) -> Features {
    let mut f = Features::default();
    let mut prev: Option<&[u8]> = None;
    loop {
        let cur = lx.tok();
        if let Some(p) = prev {
            let call = cur == Some(Tok::Punct(b'('));
            let next = |k| word_is(cur, k);
            if kw(p, "FOR") {
                f.write |= next("UPDATE") || next("SHARE");
                f.for_connection |= next("CONNECTION");
            } else if kw(p, "LOCK") {
                f.write |= next("IN"); // LOCK IN SHARE MODE
            } else if kw(p, "NEXT") || kw(p, "PREVIOUS") {
                f.write |= next("VALUE"); // NEXT VALUE FOR seq
            } else if kw(p, "INSERT") || kw(p, "REPLACE") {
                f.write |= !call; // INSERT(str, ...) and REPLACE(str, ...) are string functions
            } else if call && any(p, WRITE_FUNCS) {
                f.write = true;
            }
        }
        prev = None;
        match cur {
            None => return f,
            Some(Tok::UserVar) => f.user_var = true,
            Some(Tok::SysVar(v)) => {
                let name = split_scope(v).1;
                f.previous |= any(name, PREVIOUS_VARS);
                f.write |= any(name, WRITE_VARS);
            }
            Some(Tok::Word(w)) => {
                f.write |= any(w, &["INTO", "UPDATE", "DELETE", "SQL_CALC_FOUND_ROWS"]);
                f.select |= kw(w, "SELECT");
                prev = Some(w);
            }
            Some(_) => {}
        }
    }
}

fn kw(w: &[u8], k: &str) -> bool {
    w.eq_ignore_ascii_case(k.as_bytes())
}

fn any(w: &[u8], ks: &[&str]) -> bool {
    ks.iter().any(|k| kw(w, k))
}

fn word_is(t: Option<Tok>, k: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if kw(w, k))
}

/// `corelane:primary` / `corelane:replica`, whitespace around the parts allowed.
fn hint_in(body: &[u8]) -> Option<Hint> {
    let body = body.trim_ascii();
    let head = body.get(..8)?;
    if !head.eq_ignore_ascii_case(b"corelane") {
        return None;
    }
    let rest = body.get(8..)?.trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start();
    if rest.eq_ignore_ascii_case(b"primary") {
        Some(Hint::Primary)
    } else if rest.eq_ignore_ascii_case(b"replica") {
        Some(Hint::Replica)
    } else {
        None
    }
}

/// One token. What a quoted string or identifier holds never matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// A keyword, unquoted identifier or number.
    Word(&'a [u8]),
    /// `'...'` or `"..."`.
    Str,
    /// `` `...` ``.
    Quoted,
    /// `@name`, `@'name'`: a user variable.
    UserVar,
    /// `@@name`, `@@session.name`: the bytes after `@@`.
    SysVar(&'a [u8]),
    /// Any other byte (`;` ends the statement instead).
    Punct(u8),
}

#[derive(Clone)]
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// Inside `/*! ... */` or `/*M! ... */`, whose closing `*/` is skipped.
    exec: bool,
    /// The statement ended at a `;`: no more tokens until it is cleared.
    semi: bool,
    /// A token has been read: later comments carry no hint.
    started: bool,
    /// A string, identifier or comment ran off the end of the input.
    truncated: bool,
    hint: Option<Hint>,
    /// Where the last token ended, and whether it was a string or quoted name: `'u'@'h'`
    /// names an account, not a user variable (`root@localhost` reads as one: a Pin too many
    /// on account statements, where `SELECT@x` must not be missed).
    last_end: usize,
    last_named: bool,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            pos: 0,
            exec: false,
            semi: false,
            started: false,
            truncated: false,
            hint: None,
            last_end: usize::MAX,
            last_named: false,
        }
    }

    fn byte(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    fn peek(&self) -> Option<Tok<'a>> {
        self.clone().tok()
    }

    /// Whether the statement just read ended at a `;` that something follows; if so, the
    /// lexer moves on to it.
    fn next_statement(&mut self) -> bool {
        if !self.semi {
            return false;
        }
        let mut rest = self.clone();
        rest.semi = false;
        let more = rest.tok().is_some() || rest.semi || rest.truncated;
        self.semi = !more;
        more
    }

    /// The next token of this statement, skipping whitespace and comments.
    fn tok(&mut self) -> Option<Tok<'a>> {
        while !self.semi {
            let p = self.pos;
            let Some(&c) = self.s.get(p) else {
                self.truncated |= self.exec;
                return None;
            };
            let c1 = self.byte(p + 1);
            match c {
                0..=b' ' => self.pos += 1,
                b'/' if c1 == b'*' => {
                    let c2 = self.byte(p + 2);
                    if c2 == b'!' || (c2 == b'M' && self.byte(p + 3) == b'!') {
                        self.exec = true;
                        self.pos = p + if c2 == b'!' { 3 } else { 4 };
                        while self.byte(self.pos).is_ascii_digit() {
                            self.pos += 1;
                        }
                    } else {
                        let Some(end) = find(self.s, p + 2, b"*/") else {
                            return self.cut();
                        };
                        self.note_hint(self.s.get(p + 2..end));
                        self.pos = end + 2;
                    }
                }
                b'*' if self.exec && c1 == b'/' => {
                    self.exec = false;
                    self.pos += 2;
                }
                b'#' => self.line_comment(p + 1),
                b'-' if c1 == b'-' && self.byte(p + 2) <= b' ' => self.line_comment(p + 2),
                _ => return self.token(c, c1),
            }
        }
        None
    }

    fn token(&mut self, c: u8, c1: u8) -> Option<Tok<'a>> {
        self.started = true;
        let p = self.pos;
        let tok = match c {
            b'\'' | b'"' | b'`' => {
                let Some(end) = quoted_end(self.s, p) else {
                    return self.cut();
                };
                self.pos = end;
                if c == b'`' { Tok::Quoted } else { Tok::Str }
            }
            b'@' if c1 == b'@' => {
                self.pos = word_end(self.s, p + 2, true);
                Tok::SysVar(self.s.get(p + 2..self.pos).unwrap_or_default())
            }
            b'@' if self.last_named && self.last_end == p => {
                self.pos += 1;
                Tok::Punct(b'@')
            }
            b'@' => {
                self.pos = match c1 {
                    b'\'' | b'"' | b'`' => match quoted_end(self.s, p + 1) {
                        Some(end) => end,
                        None => return self.cut(),
                    },
                    _ => word_end(self.s, p + 1, true),
                };
                Tok::UserVar
            }
            b';' => {
                self.semi = true;
                self.pos += 1;
                self.last_named = false;
                return None;
            }
            _ if is_word(c) => {
                self.pos = word_end(self.s, p, false);
                Tok::Word(self.s.get(p..self.pos).unwrap_or_default())
            }
            _ => {
                self.pos += 1;
                Tok::Punct(c)
            }
        };
        self.last_end = self.pos;
        self.last_named = matches!(tok, Tok::Str | Tok::Quoted);
        Some(tok)
    }

    /// Ran off the end inside a string, identifier or comment.
    fn cut(&mut self) -> Option<Tok<'a>> {
        self.truncated = true;
        self.pos = self.s.len();
        None
    }

    fn line_comment(&mut self, from: usize) {
        let end = find(self.s, from, b"\n").unwrap_or(self.s.len());
        self.note_hint(self.s.get(from..end));
        self.pos = end;
    }

    fn note_hint(&mut self, body: Option<&[u8]>) {
        if !self.started && self.hint.is_none() {
            self.hint = body.and_then(hint_in);
        }
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The end of a name starting at `from`; variable names may contain dots.
fn word_end(s: &[u8], from: usize, dots: bool) -> usize {
    let mut i = from;
    while s.get(i).is_some_and(|&c| is_word(c) || (dots && c == b'.')) {
        i += 1;
    }
    i
}

/// Past the closing quote of the string or identifier opening at `start` (backslash escapes,
/// doubled quotes), or `None` when it is not closed.
fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let q = *s.get(start)?;
    let mut i = start + 1;
    while let Some(&b) = s.get(i) {
        if (b == b'\\' && q != b'`') || (b == q && s.get(i + 1) == Some(&q)) {
            i += 2; // an escape or a doubled quote
        } else if b == q {
            return Some(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

fn find(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let pos = s
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)?;
    Some(from + pos)
}

#[cfg(test)]
mod tests {
    use super::Route::*;
    use super::*;

    const P: Option<Hint> = Some(Hint::Primary);
    const R: Option<Hint> = Some(Hint::Replica);
    const N: Option<Hint> = None;

    #[rustfmt::skip]
    const ROWS: &[(&str, Route, Option<Hint>)] = &[
        // Reads: forms, case, whitespace, parentheses, comments everywhere.
        ("SELECT 1", Read, N),
        ("select * from t where a = 1", Read, N),
        ("  \n\t SeLeCt\n1\r\n", Read, N),
        ("((SELECT 1))", Read, N),
        ("(SELECT a FROM t) UNION (SELECT b FROM u)", Read, N),
        ("WITH c AS (SELECT 1) SELECT * FROM c", Read, N),
        ("with recursive c(n) as (select 1 union all select n+1 from c where n<5) select * from c", Read, N),
        ("TABLE t", Read, N),
        ("VALUES ROW(1, 2)", Read, N),
        ("/* a */ SELECT /* b */ 1 /* c */ FROM /* d */ t /* e */;", Read, N),
        ("SELECT 1 -- comment\nFROM dual", Read, N),
        ("SELECT 1 # comment", Read, N),
        ("SELECT 2--1", Read, N),
        ("SELECT 1;", Read, N),
        ("SELECT 1 ; -- done\n/* really */", Read, N),
        ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", Read, N),
        ("SELECT 'FOR UPDATE'", Read, N),
        (r#"SELECT "@x""#, Read, N),
        ("SELECT `@x` FROM t", Read, N),
        ("SELECT `a``@x` FROM t", Read, N),
        (r#"SELECT 'it''s', "a""b", 'back\\slash', 'q\'@x' FROM t"#, Read, N),
        ("SELECT * FROM t /* FOR UPDATE */", Read, N),
        ("SELECT * FROM t -- FOR UPDATE", Read, N),
        ("SELECT get_lock_count, found, last_insert_id FROM t", Read, N),
        ("SELECT 'LAST_INSERT_ID()' /* LAST_INSERT_ID() */ # LAST_INSERT_ID()", Read, N),
        ("SELECT SLEEP(1)", Read, N),
        ("SELECT REPLACE(a, 'x', 'y'), INSERT (a, 1, 2, 'z') FROM t", Read, N),
        ("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01'", Read, N),
        ("SELECT @@version, @@session.sql_mode", Read, N),
        ("SELECT * FROM t WHERE a = ? AND b LIKE '%@x%'", Read, N),
        ("SHOW TABLES", Read, N),
        ("show databases", Read, N),
        ("SHOW /*!50002 FULL */ PROCESSLIST", Read, N),
        ("SHOW GLOBAL VARIABLES LIKE 'x%'", Read, N),
        ("SHOW STATUS", Read, N),
        ("SHOW CREATE TABLE t", Read, N),
        ("SHOW GRANTS FOR 'app'@'%'", Read, N),
        ("SHOW GRANTS FOR `app`@`%`", Read, N),
        ("SHOW SLAVE STATUS", Read, N),
        ("DESC t", Read, N),
        ("describe t", Read, N),
        ("EXPLAIN SELECT * FROM t FOR UPDATE", Read, N),
        ("EXPLAIN FORMAT=JSON SELECT 1", Read, N),
        // Writes.
        ("INSERT INTO t VALUES (1)", Write, N),
        ("update t set a = 1", Write, N),
        ("DELETE FROM t", Write, N),
        ("REPLACE INTO t VALUES (1)", Write, N),
        ("LOAD DATA INFILE 'f' INTO TABLE t", Write, N),
        ("CREATE TABLE t (a INT)", Write, N),
        ("ALTER TABLE t ADD b INT", Write, N),
        ("TRUNCATE t", Write, N),
        ("DROP TEMPORARY TABLE tmp", Write, N),
        ("CALL p()", Write, N),
        ("DO SLEEP(1)", Write, N),
        ("HANDLER t OPEN", Write, N),
        ("XA START 'x'", Write, N),
        ("BEGIN", Write, N),
        ("begin work", Write, N),
        ("START TRANSACTION", Write, N),
        ("START TRANSACTION READ WRITE", Write, N),
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT", Write, N),
        ("START SLAVE", Write, N),
        ("UNLOCK TABLES", Write, N),
        ("FLUSH TABLES", Write, N),
        ("GRANT SELECT ON *.* TO 'u'@'h'", Write, N),
        ("INSERT /* @x */ INTO t VALUES ('@y')", Write, N),
        ("SET autocommit = 0", Write, N),
        ("SET @@session.autocommit:=1", Write, N),
        ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", Write, N),
        ("SET GLOBAL TRANSACTION READ ONLY", Write, N),
        ("SET GLOBAL max_connections = 10", Write, N),
        ("SET GLOBAL a = 1, b = 2", Write, N),
        ("SET @@global.max_connections = 10", Write, N),
        ("SET PERSIST max_connections = 10", Write, N),
        ("SET PASSWORD = 'x'", Write, N),
        ("SET PASSWORD FOR 'u'@'h' = 'x'", Write, N),
        ("SET STATEMENT max_statement_time=1 FOR SELECT 1", Write, N),
        ("SET DEFAULT ROLE ALL TO u", Write, N),
        ("SHOW MASTER STATUS", Write, N),
        ("SHOW BINLOG EVENTS", Write, N),
        ("show binary logs", Write, N),
        ("SHOW MASTER LOGS", Write, N),
        ("SHOW REPLICAS", Write, N),
        ("SHOW SLAVE HOSTS", Write, N),
        ("RELEASE_LOCK('x')", Write, N),
        ("SELECT * FROM t FOR UPDATE", Write, N),
        ("SELECT * FROM t FOR /* x */ update", Write, N),
        ("SELECT * FROM t WHERE a=1 FOR SHARE NOWAIT", Write, N),
        ("SELECT id FROM q WHERE done = 0 LIMIT 1 FOR UPDATE SKIP LOCKED", Write, N),
        ("SELECT * FROM t LOCK IN SHARE MODE", Write, N),
        ("SELECT * FROM t /*!50000 FOR UPDATE */", Write, N),
        ("SELECT * INTO OUTFILE '/tmp/x' FROM t", Write, N),
        ("(SELECT a FROM t INTO DUMPFILE '/tmp/y')", Write, N),
        ("SELECT GET_LOCK('l', 10)", Write, N),
        ("SELECT release_lock ('l')", Write, N),
        ("SELECT RELEASE_ALL_LOCKS()", Write, N),
        ("SELECT IS_FREE_LOCK('l') OR IS_USED_LOCK('l')", Write, N),
        ("SELECT LAST_INSERT_ID()", Write, N),
        ("SELECT last_insert_id /* c */\n()", Write, N),
        ("SELECT FOUND_ROWS()", Write, N),
        ("SELECT ROW_COUNT()", Write, N),
        ("SELECT NEXTVAL(s), LASTVAL(s), SETVAL(s, 10)", Write, N),
        ("SELECT NEXT VALUE FOR s", Write, N),
        ("SELECT previous value for s", Write, N),
        ("SELECT @@identity", Write, N),
        ("SELECT @@LAST_INSERT_ID", Write, N),
        ("SELECT @@session.last_gtid", Write, N),
        ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1", Write, N),
        ("WITH c AS (SELECT 1) DELETE FROM t WHERE a IN (SELECT * FROM c)", Write, N),
        ("WITH c AS (SELECT 1) UPDATE t SET a = 1", Write, N),
        ("WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c", Write, N),
        ("EXPLAIN ANALYZE SELECT 1", Write, N),
        ("EXPLAIN FOR CONNECTION 5", Write, N),
        ("/*!50001 CREATE ALGORITHM=UNDEFINED */ /*!50013 DEFINER=`root`@`localhost` */ /*!50001 VIEW v AS SELECT 1 */", Write, N),
        // Empty, unrecognised, unterminated.
        ("", Write, N),
        ("  \n\t ", Write, N),
        ("/* just a comment */", Write, N),
        ("-- only\n# this", Write, N),
        (";", Write, N),
        ("(1)", Write, N),
        ("frobnicate the database", Write, N),
        ("SELECT 'abc", Write, N),
        ("SELECT \"abc\\\"", Write, N),
        ("SELECT `abc", Write, N),
        ("SELECT 1 /* unterminated", Write, N),
        ("/*!40101 SET NAMES utf8", Write, N),
        // Multi-statements.
        ("SELECT 1; SELECT 2", Write, N),
        ("SELECT 1; INSERT INTO t VALUES (1);", Write, N),
        ("SELECT 1;;", Write, N),
        ("SELECT 1; 'unterminated", Write, N),
        ("SET @a = 1; SELECT @a", Pin, N),
        ("SELECT 1; SET NAMES utf8", Pin, N),
        ("USE db; SELECT 1", Pin, N),
        ("BEGIN; INSERT INTO t VALUES (1); COMMIT", Pin, N),
        ("START TRANSACTION READ ONLY; SELECT 1; COMMIT;", Pin, N),
        ("SET autocommit=0; UPDATE t SET a=1", Pin, N),
        // Pin.
        ("CREATE TEMPORARY TABLE tmp (a INT)", Pin, N),
        ("create or replace temporary table tmp (a int)", Pin, N),
        ("LOCK TABLES t WRITE", Pin, N),
        ("lock table t read", Pin, N),
        ("SELECT @x", Pin, N),
        ("SELECT a FROM t WHERE b = @x", Pin, N),
        ("SELECT @x := 1", Pin, N),
        ("SELECT a INTO @x FROM t", Pin, N),
        (r"SELECT '\'' , @x", Pin, N),
        ("SELECT @`quoted var`, @'q2'", Pin, N),
        ("SELECT(@x)", Pin, N),
        ("SELECT@x", Pin, N),
        ("SELECT 1 FROM t WHERE a=1 AND@x", Pin, N),
        ("SHOW GRANTS FOR app@localhost", Pin, N),
        ("SELECT @@warning_count, @x", Pin, N),
        ("INSERT INTO t VALUES (@x)", Pin, N),
        ("CALL p(@out)", Pin, N),
        ("SET @x = LAST_INSERT_ID()", Pin, N),
        ("SET @x = GET_LOCK('a', 1)", Pin, N),
        ("SET @n = (SELECT COUNT(*) FROM t)", Pin, N),
        ("SET @@global.x = 1, @@session.y = 2", Pin, N),
        ("SET GLOBAL a = 1, SESSION b = 2", Pin, N),
        ("SET NAMES utf8, autocommit = 1", Pin, N),
        // Session.
        ("SET NAMES utf8mb4", Session, N),
        ("set names 'utf8' collate 'utf8_bin'", Session, N),
        ("SET CHARACTER SET latin1", Session, N),
        ("SET CHARSET utf8", Session, N),
        ("SET @x = 1", Session, N),
        ("SET @x := 'a', @y = @x + 1", Session, N),
        ("SET @x = CONCAT('a', 'b'), NAMES utf8", Session, N),
        ("SET SESSION sql_mode = 'ANSI'", Session, N),
        ("SET LOCAL wait_timeout = 10", Session, N),
        ("SET @@session.time_zone = '+00:00'", Session, N),
        ("SET @@local.x = 1, @@y = 2", Session, N),
        ("SET sql_mode = (CONCAT(@@sql_mode, ',ANSI'))", Session, N),
        ("SET keycache1.key_buffer_size = 1", Session, N),
        ("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", Session, N),
        ("SET ROLE ALL", Session, N),
        ("/*!40101 SET NAMES utf8 */", Session, N),
        ("/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE */;", Session, N),
        ("/*M!100101 SET sql_mode = '' */", Session, N),
        ("/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;", Session, N),
        ("SET @saved_cs_client = @@character_set_client", Session, N),
        // Use.
        ("USE db", Use, N),
        ("use `my db`", Use, N),
        ("/* c */ USE db;", Use, N),
        // BeginReadOnly.
        ("START TRANSACTION READ ONLY", BeginReadOnly, N),
        ("start transaction with consistent snapshot, read only", BeginReadOnly, N),
        // EndTransaction.
        ("COMMIT", EndTransaction, N),
        ("commit work", EndTransaction, N),
        ("ROLLBACK", EndTransaction, N),
        ("ROLLBACK WORK", EndTransaction, N),
        ("ROLLBACK TO SAVEPOINT s", EndTransaction, N),
        ("SAVEPOINT s", EndTransaction, N),
        ("RELEASE SAVEPOINT s", EndTransaction, N),
        // Previous.
        ("SHOW WARNINGS", Previous, N),
        ("show errors limit 1", Previous, N),
        ("SHOW COUNT(*) WARNINGS", Previous, N),
        ("SHOW COUNT ( * ) ERRORS", Previous, N),
        ("SELECT @@warning_count", Previous, N),
        ("SELECT @@session.error_count", Previous, N),
        ("SELECT @@WARNING_COUNT AS w, 1", Previous, N),
        // Hints.
        ("/* corelane:primary */ SELECT 1", Read, P),
        ("/*corelane:replica*/ INSERT INTO t VALUES (1)", Write, R),
        ("/*  CoreLane : Primary  */\nSELECT 1", Read, P),
        ("-- corelane:replica\nSELECT 1", Read, R),
        ("# corelane:primary\nSELECT 1", Read, P),
        ("/* other */ /* corelane:replica */ SELECT 1", Read, R),
        ("/* corelane:replica */ /* corelane:primary */ SELECT 1", Read, R),
        ("/* corelane:primary */", Write, P),
        ("SELECT /* corelane:primary */ 1", Read, N),
        ("(/* corelane:primary */ SELECT 1)", Read, N),
        ("/* corelane:nowhere */ SELECT 1", Read, N),
        ("/* corelane:primary please */ SELECT 1", Read, N),
        ("/* corelane:primary */ SELECT 1; SELECT 2", Write, P),
        ("/* corelane:replica */ SET NAMES utf8", Session, R),
        ("SELECT 1; /* corelane:primary */ SELECT 2", Write, N),
    ];

    #[test]
    fn table() {
        assert!(ROWS.len() >= 80);
        let mut bad = Vec::new();
        for &(sql, route, hint) in ROWS {
            let got = classify(sql.as_bytes());
            if (got.route, got.hint) != (route, hint) {
                bad.push(format!("{sql:?}: got {got:?}, want {route:?} {hint:?}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn statements_that_may_open_a_transaction() {
        for sql in [
            "BEGIN",
            "start transaction read only",
            "CALL p()",
            "SET autocommit = 0",
            "SELECT 1; SELECT 2",
            "XA START 'x'",
        ] {
            assert!(classify(sql.as_bytes()).opens, "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "SELECT 1",
            "COMMIT",
            "SET NAMES utf8",
            "",
        ] {
            assert!(!classify(sql.as_bytes()).opens, "{sql}");
        }
    }

    #[test]
    fn kill_is_found_in_any_statement() {
        for sql in [
            &b"KILL 5"[..],
            b"  kill QUERY 5",
            b"/* x */ KILL 7",
            b"SELECT 1; KILL 3",
            b"/*!50000 KILL 2 */",
        ] {
            assert_eq!(
                classify(sql).route,
                Route::Kill,
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
        for sql in [
            &b"SELECT 'KILL 5'"[..],
            b"KILLS",
            b"SELECT kill FROM t",
            b"",
            b"-- KILL 1",
        ] {
            assert_ne!(
                classify(sql).route,
                Route::Kill,
                "{}",
                String::from_utf8_lossy(sql)
            );
        }
    }

    #[test]
    fn every_prefix_never_panics() {
        for &(sql, _, _) in ROWS {
            let b = sql.as_bytes();
            for n in 0..=b.len() {
                classify(&b[..n]);
            }
        }
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        assert_eq!(classify(b"SELECT \xff\xfe FROM t").route, Read);
        assert_eq!(classify(b"SELECT '\xc3\x28' FROM t").route, Read);
        assert_eq!(classify(b"SELECT @\xff").route, Pin);
        assert_eq!(classify(b"\xff\xff\xff").route, Write);
        let noise: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for n in 0..=noise.len() {
            classify(&noise[..n]);
            classify(&noise[n..]);
        }
    }
}
