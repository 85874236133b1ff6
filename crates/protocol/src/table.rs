//! The macros that turn the ABI table ([`crate::op`]) into Rust: the ops,
//! their field lists, the requests and replies and their encodings. Nothing
//! here names an op or a field; the table does.

/// A struct of message registers. Each register holds one field whole, or
/// is packed: a name and the fields it holds, each at a bit range (`low..high`,
/// bit 0 the least significant), optionally counted in pages on the wire
/// (`pages`: the struct holds bytes, the register `bytes >> PAGE_BITS`).
/// Every field is of a [`crate::Word`] type and has its C name in
/// parentheses; the struct has every field, in order, whole:
///
/// ```text
/// /// Docs of the struct.
/// Name {
///     /// Docs of the field.
///     field (FIELD): Type,
///     /// Docs of the register (for the table's reader).
///     REGISTER {
///         /// Docs of the field.
///         small (SMALL): Type [0..8],
///         count (COUNT): u64 [32..64 pages],
///     },
/// }
/// ```
///
/// Generates the struct, its [`crate::Field`] list (`FIELDS`, one per
/// register), `encode` and `decode`.
macro_rules! wire_struct {
    (
        $(#[doc = $doc:literal])*
        $Name:ident { $($body:tt)* }
    ) => {
        wire_struct!(@registers [$(#[doc = $doc])* $Name] [] $($body)*);
    };
    // A register holding one field whole.
    (@registers $head:tt [$($done:tt)*]
        $(#[doc = $f_doc:literal])* $field:ident ($FIELD:ident): $ty:ty $(, $($rest:tt)*)?
    ) => {
        wire_struct!(@registers $head [$($done)*
            (whole $FIELD [ [$(#[doc = $f_doc])*] $field ($FIELD): $ty [0, 64, 0] ])
        ] $($($rest)*)?);
    };
    // A packed register.
    (@registers $head:tt [$($done:tt)*]
        $(#[doc = $r_doc:literal])* $REGISTER:ident {
            $( $(#[doc = $f_doc:literal])* $field:ident ($FIELD:ident): $ty:ty
                [$low:literal .. $high:literal $($unit:ident)?] ),* $(,)?
        } $(, $($rest:tt)*)?
    ) => {
        wire_struct!(@registers $head [$($done)*
            (packed $REGISTER [ $( [$(#[doc = $f_doc])*] $field ($FIELD): $ty
                [$low, $high - $low, wire_unit!($($unit)?)] )* ])
        ] $($($rest)*)?);
    };
    (@registers [$(#[doc = $doc:literal])* $Name:ident] [ $(
        ($kind:ident $REGISTER:ident [ $( [$(#[doc = $f_doc:literal])*] $field:ident ($FIELD:ident): $ty:ty
            [$shift:expr, $width:expr, $unit:expr] )* ])
    )* ]) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $Name {
            $( $( $(#[doc = $f_doc])* pub $field: $ty, )* )*
        }

        impl $Name {
            /// The message registers, in order.
            pub const FIELDS: &'static [$crate::Field] = &[
                $( wire_register!($kind $REGISTER $( $FIELD $ty [$shift, $width, $unit] )*), )*
            ];

            /// Write the registers into `out` and return how many there are.
            pub fn encode(&self, out: &mut [u64; $crate::MAX_MESSAGE_WORDS]) -> usize {
                let words: &[u64] = &[ $(
                    0 $( | $crate::wire::pack($crate::Word::to_word(self.$field), $shift, $width, $unit) )*
                ),* ];
                out[..words.len()].copy_from_slice(words);
                words.len()
            }

            /// Read the registers: `None` unless there are exactly as many as
            /// [`Self::FIELDS`], no register has a bit set that no field
            /// uses, and each field holds a value of its type.
            #[allow(unused_mut, unused_variables)]
            pub fn decode(words: &[u64]) -> Option<Self> {
                if words.len() != Self::FIELDS.len() {
                    return None;
                }
                let mut words = words.iter().copied();
                let mut registers = Self::FIELDS.iter();
                $(
                    let register = words.next()?;
                    if register & registers.next()?.unused_bits() != 0 {
                        return None;
                    }
                    $( let $field = <$ty as $crate::Word>::from_word(
                        $crate::wire::unpack(register, $shift, $width, $unit),
                    ).ok()?; )*
                )*
                Some($Name { $( $( $field, )* )* })
            }
        }

        const _: () = {
            let mut i = 0;
            while i < $Name::FIELDS.len() {
                $crate::wire::check_parts($Name::FIELDS[i].parts);
                i += 1;
            }
        };
    };
}

/// The unit a packed field counts in, as a power of two: bytes (nothing
/// written) or `pages`.
macro_rules! wire_unit {
    () => {
        0
    };
    (pages) => {
        $crate::PAGE_BITS
    };
}

/// One register's [`crate::Field`]: a field held whole, or a packed register.
macro_rules! wire_register {
    (whole $REGISTER:ident $FIELD:ident $ty:ty [$shift:expr, $width:expr, $unit:expr]) => {
        $crate::Field {
            name: stringify!($REGISTER),
            description: <$ty as $crate::Word>::C_DESCRIPTION,
            parts: &[],
        }
    };
    (packed $REGISTER:ident $( $FIELD:ident $ty:ty [$shift:expr, $width:expr, $unit:expr] )*) => {
        $crate::Field {
            name: stringify!($REGISTER),
            description: $crate::wire::PACKED_DESCRIPTION,
            parts: &[ $( $crate::Part {
                name: stringify!($FIELD),
                description: <$ty as $crate::Word>::C_DESCRIPTION,
                shift: $shift,
                width: $width,
                unit_bits: $unit,
            }, )* ],
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
                reply $Reply:ident { $($reply:tt)* }
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
                            parts: &[],
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
                $Reply { $($reply)* }
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
