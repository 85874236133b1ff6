//! The macros that turn the ABI table ([`crate::op`]) into Rust: the ops,
//! their field lists, the requests and replies and their encodings. Nothing
//! here names an op or a field; the table does.

/// A struct of message registers, one field per register in declaration
/// order, each of a [`crate::Word`] type, with its C name in parentheses:
///
/// ```text
/// /// Docs of the struct.
/// Name {
///     /// Docs of the field.
///     field (FIELD): Type,
/// }
/// ```
///
/// Generates the struct, its [`crate::Field`] list (`FIELDS`), `encode` and `decode`.
macro_rules! wire_struct {
    (
        $(#[doc = $doc:literal])*
        $Name:ident {
            $( $(#[doc = $field_doc:literal])* $field:ident ($FIELD:ident): $ty:ty ),* $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $Name {
            $( $(#[doc = $field_doc])* pub $field: $ty, )*
        }

        impl $Name {
            /// The message registers, in order.
            pub const FIELDS: &'static [$crate::Field] = &[
                $( $crate::Field {
                    name: stringify!($FIELD),
                    description: <$ty as $crate::Word>::C_DESCRIPTION,
                }, )*
            ];

            /// Write the registers into `out` and return how many there are.
            pub fn encode(&self, out: &mut [u64; $crate::MAX_MESSAGE_WORDS]) -> usize {
                let words: &[u64] = &[ $( $crate::Word::to_word(self.$field) ),* ];
                out[..words.len()].copy_from_slice(words);
                words.len()
            }

            /// Read the registers: `None` unless there are exactly as many as
            /// [`Self::FIELDS`] and each holds a value of its field's type.
            #[allow(unused_mut, unused_variables)]
            pub fn decode(words: &[u64]) -> Option<Self> {
                if words.len() != Self::FIELDS.len() {
                    return None;
                }
                let mut words = words.iter().copied();
                Some($Name { $( $field: <$ty as $crate::Word>::from_word(words.next()?).ok()? ),* })
            }
        }
    };
}

/// The whole ABI table: every op with its number, C name, request fields and
/// reply struct (see [`crate::op`]). Generates [`crate::Op`] and its field
/// lists, [`crate::Request`] with its encoding and decoding, each op's reply
/// struct and [`crate::Reply`].
macro_rules! wire_ops {
    (
        $(
            $(#[doc = $op_doc:literal])*
            $Op:ident = $number:literal, $NAME:ident {
                request {
                    $( $(#[doc = $q_doc:literal])* $q:ident ($Q:ident): $q_ty:ty ),* $(,)?
                }
                $(#[doc = $reply_doc:literal])*
                reply $Reply:ident {
                    $( $(#[doc = $p_doc:literal])* $p:ident ($P:ident): $p_ty:ty ),* $(,)?
                }
            }
        )*
    ) => {
        /// One capbuf operation. The value is the PPC message label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u64)]
        pub enum Op {
            $( $(#[doc = $op_doc])* $Op = $number, )*
        }

        impl Op {
            /// Every op, in the table's order (by number), for tables and generated headers.
            pub const ALL: [Op; [$(Op::$Op),*].len()] = [$(Op::$Op),*];

            /// Name in `SCREAMING_SNAKE_CASE`, as the C header spells it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Op::$Op => stringify!($NAME), )*
                }
            }

            /// The request's message registers, in order.
            pub const fn request_fields(self) -> &'static [$crate::Field] {
                match self {
                    $( Op::$Op => &[
                        $( $crate::Field {
                            name: stringify!($Q),
                            description: <$q_ty as $crate::Word>::C_DESCRIPTION,
                        }, )*
                    ], )*
                }
            }

            /// A successful reply's message registers, in order.
            pub const fn reply_fields(self) -> &'static [$crate::Field] {
                match self {
                    $( Op::$Op => $Reply::FIELDS, )*
                }
            }
        }

        const _: () = {
            let mut i = 0;
            while i < Op::ALL.len() {
                assert!(Op::ALL[i] as usize == i + 1, "ops are numbered 1..=N in table order, without gaps");
                assert!(Op::ALL[i].request_words() <= $crate::MAX_MESSAGE_WORDS);
                assert!(Op::ALL[i].reply_words() <= $crate::MAX_MESSAGE_WORDS);
                i += 1;
            }
        };

        /// A decoded request: an op and its fields, each of its wire type.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Request {
            $(
                #[doc = concat!("See [`Op::", stringify!($Op), "`].")]
                $Op { $( $(#[doc = $q_doc])* $q: $q_ty, )* },
            )*
        }

        impl Request {
            /// The op this request belongs to.
            pub const fn op(&self) -> Op {
                match self {
                    $( Request::$Op { .. } => Op::$Op, )*
                }
            }

            /// Read a request from its label, message registers and count of
            /// extra capabilities. Checks the label, the length and the
            /// capabilities before reading any register, then reads each
            /// field in order; a register that holds no value of its field's
            /// type refuses the request with that type's error ([`crate::Word::from_word`]).
            pub fn decode(label: u64, words: &[u64], extra_caps: usize) -> Result<Request, $crate::DecodeError> {
                let op = Op::try_from(label).map_err(|_| $crate::Error::UnknownOp)?;
                if words.len() != op.request_words() {
                    return Err($crate::Error::WrongLength);
                }
                if extra_caps != 0 {
                    return Err($crate::Error::UnexpectedCaps);
                }
                let mut words = words.iter().copied();
                let mut next = || words.next().ok_or($crate::Error::WrongLength);
                Ok(match op {
                    $( Op::$Op => Request::$Op {
                        $( $q: <$q_ty as $crate::Word>::from_word(next()?)?, )*
                    }, )*
                })
            }

            /// Write the request's registers into `out` and return `(label, length)`.
            pub fn encode(&self, out: &mut [u64; $crate::MAX_MESSAGE_WORDS]) -> (u64, usize) {
                let words: &[u64] = match *self {
                    $( Request::$Op { $($q),* } => &[ $( $crate::Word::to_word($q) ),* ], )*
                };
                out[..words.len()].copy_from_slice(words);
                (self.op() as u64, words.len())
            }
        }

        $(
            wire_struct! {
                $(#[doc = $reply_doc])*
                $Reply {
                    $( $(#[doc = $p_doc])* $p ($P): $p_ty, )*
                }
            }

            impl From<$Reply> for Reply {
                fn from(reply: $Reply) -> Reply {
                    Reply::$Op(reply)
                }
            }

            impl TryFrom<Reply> for $Reply {
                type Error = Reply;

                fn try_from(reply: Reply) -> Result<$Reply, Reply> {
                    match reply {
                        Reply::$Op(reply) => Ok(reply),
                        #[allow(unreachable_patterns)]
                        other => Err(other),
                    }
                }
            }
        )*

        /// A successful reply: one variant per op, holding that op's reply struct.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reply {
            $(
                #[doc = concat!("To [`Op::", stringify!($Op), "`].")]
                $Op($Reply),
            )*
        }

        impl Reply {
            /// The op this reply answers.
            pub const fn op(&self) -> Op {
                match self {
                    $( Reply::$Op(_) => Op::$Op, )*
                }
            }

            /// Write the reply's registers into `out` and return the length. The label is 0.
            pub fn encode(&self, out: &mut [u64; $crate::MAX_MESSAGE_WORDS]) -> usize {
                match self {
                    $( Reply::$Op(reply) => reply.encode(out), )*
                }
            }

            /// Read the registers of a successful reply to `op`: `None` if
            /// there are not exactly as many as the op's reply has, or one
            /// holds no value of its field's type.
            pub fn decode_fields(op: Op, words: &[u64]) -> Option<Reply> {
                match op {
                    $( Op::$Op => $Reply::decode(words).map(Reply::$Op), )*
                }
            }
        }
    };
}
