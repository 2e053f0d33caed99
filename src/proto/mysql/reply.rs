//! Where a command's reply ends, sans-IO: a small state machine fed the reply's packets one
//! at a time, which says when the last one has gone by and what server status it carried.
//! That lets the engine forward a backend's reply to the client as raw bytes, packet by
//! packet, without decoding rows, and still learn the transaction state (`IN_TRANS`,
//! `AUTOCOMMIT`) from the server's own status flags.
//!
//! The reply shapes (classic protocol, no `DEPRECATE_EOF`: corelane never offers it):
//! - OK or ERR;
//! - a result set: column count, that many column definitions, EOF, rows, EOF (or ERR); with
//!   `MORE_RESULTS_EXISTS` in the final status another reply follows (multi-statements, CALL);
//!   a binary-protocol result opened with a cursor ends at the EOF after its columns;
//! - COM_STMT_PREPARE: an OK-like header with the parameter and column counts, then that many
//!   definitions, each group closed by an EOF;
//! - COM_STMT_FETCH: rows and an EOF; COM_FIELD_LIST: definitions and an EOF.
//!
//! Rows are never inspected beyond their first byte and length: a row is told from an EOF by
//! the EOF's length (under 9 bytes), as the protocol specifies.
//!
//! Not here: reading or writing bytes, LOCAL INFILE (not offered to clients, so a server never
//! asks for a file).

use super::wire::{Reader, WireError, status};

/// What the reply to a command looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// OK, ERR, or result sets (COM_QUERY, COM_STMT_EXECUTE).
    Results,
    /// COM_STMT_PREPARE.
    Prepare,
    /// COM_STMT_FETCH: rows until EOF, or ERR.
    Rows,
    /// COM_FIELD_LIST: column definitions until EOF, or ERR.
    Fields,
    /// A single packet (COM_PING, COM_INIT_DB, COM_STMT_RESET, COM_STATISTICS, ...).
    One,
}

/// After a packet: more to come, or the reply is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    More,
    /// The reply is over. `status` is the server status of its final OK or EOF (`None` after
    /// an ERR, which carries none); `error` says it ended with an ERR.
    Done {
        status: Option<u16>,
        error: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first packet of a reply (or of the next result of a multi-result reply).
    First,
    /// Column definitions still to come, then an EOF.
    Columns(u64),
    ColumnsEof,
    Rows,
    /// Prepare: parameter definitions still to come (then EOF), then column definitions.
    Params {
        left: u64,
        columns: u64,
    },
    ParamsEof {
        columns: u64,
    },
    Fields,
}

/// Follows one reply.
#[derive(Debug, Clone)]
pub struct ReplyReader {
    expect: Expect,
    state: State,
}

/// The fields of a COM_STMT_PREPARE OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub statement: u32,
    pub columns: u16,
    pub params: u16,
}

impl PrepareOk {
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0 {
            return Err(WireError::Malformed("prepare reply is not an OK"));
        }
        let statement = r.u32()?;
        let columns = r.u16()?;
        let params = r.u16()?;
        Ok(PrepareOk {
            statement,
            columns,
            params,
        })
    }
}

fn is_eof(first: &[u8], len: usize) -> bool {
    first.first() == Some(&0xFE) && len < 9
}

fn eof_status(first: &[u8]) -> Result<u16, WireError> {
    let mut r = Reader::new(first);
    r.u8()?;
    r.u16()?; // warnings
    r.u16()
}

fn ok_status(first: &[u8]) -> Result<u16, WireError> {
    let mut r = Reader::new(first);
    r.u8()?;
    r.lenenc()?;
    r.lenenc()?;
    r.u16()
}

impl ReplyReader {
    pub fn new(expect: Expect) -> Self {
        let state = match expect {
            Expect::Rows => State::Rows,
            Expect::Fields => State::Fields,
            _ => State::First,
        };
        ReplyReader { expect, state }
    }

    /// Takes the next packet of the reply: `first` holds the start of its payload (at least
    /// its first 21 bytes when it has that many; the whole payload is fine), `len` the
    /// payload's full length.
    pub fn feed(&mut self, first: &[u8], len: usize) -> Result<Step, WireError> {
        let head = *first
            .first()
            .ok_or(WireError::Malformed("empty reply packet"))?;
        if head == 0xFF && !matches!(self.state, State::Columns(_) | State::Params { .. }) {
            return Ok(Step::Done {
                status: None,
                error: true,
            });
        }
        match self.state {
            State::First => match (self.expect, head) {
                (Expect::One, _) => {
                    let status = match head {
                        0x00 if len >= 7 => Some(ok_status(first)?),
                        0xFE if len < 9 => Some(eof_status(first)?),
                        _ => None,
                    };
                    Ok(Step::Done {
                        status,
                        error: false,
                    })
                }
                (Expect::Prepare, _) => {
                    let ok = PrepareOk::parse(first)?;
                    let (params, columns) = (u64::from(ok.params), u64::from(ok.columns));
                    self.state = if params > 0 {
                        State::Params {
                            left: params,
                            columns,
                        }
                    } else if columns > 0 {
                        State::Columns(columns)
                    } else {
                        return Ok(Step::Done {
                            status: None,
                            error: false,
                        });
                    };
                    Ok(Step::More)
                }
                (_, 0x00) => self.end(ok_status(first)?),
                (_, 0xFB) => Err(WireError::Malformed(
                    "LOCAL INFILE request (the client was not offered LOCAL_FILES)",
                )),
                _ => {
                    let n = Reader::new(first).lenenc()?;
                    if n == 0 {
                        return Err(WireError::Malformed("result set of zero columns"));
                    }
                    self.state = State::Columns(n);
                    Ok(Step::More)
                }
            },
            State::Columns(left) => {
                self.state = if left > 1 {
                    State::Columns(left - 1)
                } else {
                    State::ColumnsEof
                };
                Ok(Step::More)
            }
            State::ColumnsEof => {
                if !is_eof(first, len) {
                    return Err(WireError::Malformed("no EOF after the column definitions"));
                }
                let status = eof_status(first)?;
                if self.expect == Expect::Prepare {
                    return Ok(Step::Done {
                        status: None,
                        error: false,
                    });
                }
                if status & status::CURSOR_EXISTS != 0 {
                    // COM_STMT_EXECUTE with a cursor: rows come with COM_STMT_FETCH.
                    return self.end(status);
                }
                self.state = State::Rows;
                Ok(Step::More)
            }
            State::Rows => {
                if is_eof(first, len) {
                    if self.expect == Expect::Rows {
                        return Ok(Step::Done {
                            status: Some(eof_status(first)?),
                            error: false,
                        });
                    }
                    return self.end(eof_status(first)?);
                }
                Ok(Step::More)
            }
            State::Params { left, columns } => {
                self.state = if left > 1 {
                    State::Params {
                        left: left - 1,
                        columns,
                    }
                } else {
                    State::ParamsEof { columns }
                };
                Ok(Step::More)
            }
            State::ParamsEof { columns } => {
                if !is_eof(first, len) {
                    return Err(WireError::Malformed(
                        "no EOF after the parameter definitions",
                    ));
                }
                if columns == 0 {
                    return Ok(Step::Done {
                        status: None,
                        error: false,
                    });
                }
                self.state = State::Columns(columns);
                Ok(Step::More)
            }
            State::Fields => {
                if is_eof(first, len) {
                    return Ok(Step::Done {
                        status: Some(eof_status(first)?),
                        error: false,
                    });
                }
                Ok(Step::More)
            }
        }
    }

    /// A result ended with `status`: the reply ends unless more results follow.
    fn end(&mut self, status: u16) -> Result<Step, WireError> {
        if status & status::MORE_RESULTS_EXISTS != 0 {
            self.state = State::First;
            Ok(Step::More)
        } else {
            Ok(Step::Done {
                status: Some(status),
                error: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mysql::packet;

    fn run(expect: Expect, packets: &[Vec<u8>]) -> Vec<Step> {
        let mut r = ReplyReader::new(expect);
        packets
            .iter()
            .map(|p| r.feed(p, p.len()).unwrap())
            .collect()
    }

    fn ok(status: u16) -> Vec<u8> {
        let mut v = vec![0, 0, 0];
        v.extend_from_slice(&status.to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    }

    fn eof(status: u16) -> Vec<u8> {
        let mut v = vec![0xFE, 0, 0];
        v.extend_from_slice(&status.to_le_bytes());
        v
    }

    const MORE: u16 = status::MORE_RESULTS_EXISTS;
    const AC: u16 = status::AUTOCOMMIT;

    #[test]
    fn ok_and_err() {
        assert_eq!(
            run(Expect::Results, &[ok(AC | status::IN_TRANS)]),
            [Step::Done {
                status: Some(AC | status::IN_TRANS),
                error: false
            }]
        );
        let mut err = Vec::new();
        super::super::wire::put_err(&mut err, 1064, b"42000", "syntax");
        assert_eq!(
            run(Expect::Results, &[err]),
            [Step::Done {
                status: None,
                error: true
            }]
        );
    }

    #[test]
    fn result_set_then_more_results() {
        // Two columns, a row whose first byte is 0xFE but is 9 bytes long (not an EOF), a
        // row, then EOF with MORE_RESULTS, then an OK.
        let steps = run(
            Expect::Results,
            &[
                vec![2],
                b"\x03defcol1".to_vec(),
                b"\x03defcol2".to_vec(),
                eof(AC),
                vec![0xFE, 1, 2, 3, 4, 5, 6, 7, 8],
                vec![1, b'a', 1, b'b'],
                eof(AC | MORE),
                ok(AC),
            ],
        );
        assert!(steps[..7].iter().all(|s| *s == Step::More), "{steps:?}");
        assert_eq!(
            steps[7],
            Step::Done {
                status: Some(AC),
                error: false
            }
        );
    }

    #[test]
    fn error_in_the_middle_of_rows_ends_the_reply() {
        let mut err = Vec::new();
        super::super::wire::put_err(&mut err, 1317, b"70100", "interrupted");
        let steps = run(Expect::Results, &[vec![1], vec![3], eof(AC), vec![0], err]);
        assert_eq!(
            steps[4],
            Step::Done {
                status: None,
                error: true
            }
        );
    }

    #[test]
    fn cursor_ends_after_columns() {
        let steps = run(
            Expect::Results,
            &[vec![1], vec![3], eof(AC | status::CURSOR_EXISTS)],
        );
        assert_eq!(
            steps[2],
            Step::Done {
                status: Some(AC | status::CURSOR_EXISTS),
                error: false
            }
        );
        let steps = run(
            Expect::Rows,
            &[vec![0, 1], vec![0, 2], eof(AC | status::LAST_ROW_SENT)],
        );
        assert_eq!(
            steps[2],
            Step::Done {
                status: Some(AC | status::LAST_ROW_SENT),
                error: false
            }
        );
    }

    fn prepare_ok(columns: u16, params: u16) -> Vec<u8> {
        let mut v = vec![0, 7, 0, 0, 0];
        v.extend_from_slice(&columns.to_le_bytes());
        v.extend_from_slice(&params.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0]);
        v
    }

    #[test]
    fn prepare_shapes() {
        let p = PrepareOk::parse(&prepare_ok(2, 1)).unwrap();
        assert_eq!(
            p,
            PrepareOk {
                statement: 7,
                columns: 2,
                params: 1
            }
        );
        let done = Step::Done {
            status: None,
            error: false,
        };
        assert_eq!(run(Expect::Prepare, &[prepare_ok(0, 0)]), [done]);
        let s = run(
            Expect::Prepare,
            &[
                prepare_ok(2, 1),
                vec![3],
                eof(AC),
                vec![3],
                vec![3],
                eof(AC),
            ],
        );
        assert_eq!(s[5], done);
        assert!(s[..5].iter().all(|x| *x == Step::More));
        let s = run(
            Expect::Prepare,
            &[prepare_ok(0, 2), vec![3], vec![3], eof(AC)],
        );
        assert_eq!(s[3], done);
        let s = run(Expect::Prepare, &[prepare_ok(1, 0), vec![3], eof(AC)]);
        assert_eq!(s[2], done);
    }

    #[test]
    fn single_packets() {
        assert_eq!(
            run(Expect::One, &[b"Uptime: 5".to_vec()]),
            [Step::Done {
                status: None,
                error: false
            }]
        );
        assert_eq!(
            run(Expect::Fields, &[vec![3], vec![3], eof(AC)])[2],
            Step::Done {
                status: Some(AC),
                error: false
            }
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [vec![], vec![0xFB], vec![0], vec![0xFC, 1]] {
            let mut r = ReplyReader::new(Expect::Results);
            assert!(r.feed(&bad, bad.len()).is_err(), "{bad:?}");
        }
        // Every prefix of every packet of a real-shaped reply: no panic.
        for p in [ok(AC), eof(AC), prepare_ok(1, 1), vec![2, 0, 0]] {
            for expect in [Expect::Results, Expect::Prepare, Expect::One, Expect::Rows] {
                for n in 0..=p.len() {
                    let _ = ReplyReader::new(expect).feed(&p[..n], n);
                }
            }
        }
        // Framing a reply built with the packet codec round-trips through the reader.
        let mut bytes = Vec::new();
        let mut seq = 1;
        for p in [vec![1], vec![3], eof(AC), vec![1, b'x'], eof(AC)] {
            seq = packet::write(&mut bytes, seq, &p);
        }
        let mut r = ReplyReader::new(Expect::Results);
        let mut at = 0;
        let mut last = Step::More;
        while let Some(f) = packet::frame(&bytes[at..], 1 << 20).unwrap() {
            let p = packet::payload(&bytes[at..], &f);
            last = r.feed(&p, f.len).unwrap();
            at += f.consumed;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(
            last,
            Step::Done {
                status: Some(AC),
                error: false
            }
        );
    }
}
