//! Error and refusal codes: stable on the wire, each with a name for metrics and summaries.

/// Error and open-refusal codes, stable on the wire. Codes 12 (`already_opened`) and
/// 38 (`already_grabbed`) are retired: a repeated open or grab gets its original
/// answer instead (see the protocol page); they are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The payload could not be decoded.
    Malformed = 1,
    /// The frame was larger than [`MAX_FRAME_LEN`].
    TooLarge = 2,
    /// The version byte is not one this gateway speaks.
    UnsupportedVersion = 3,
    /// A frame other than `Hello` came first, or a client sent a server frame.
    NotHelloFirst = 4,
    /// The auth token does not belong to the user id.
    AuthFailed = 5,
    /// The client was silent longer than the heartbeat timeout.
    HeartbeatTimeout = 6,
    /// The gateway is shutting down; reconnect elsewhere.
    ShuttingDown = 7,
    /// The gateway holds all the connections it can; connect to another one.
    GatewayFull = 8,
    /// The gateway's budget for unfinished frames (over all its connections) is spent;
    /// reconnect a moment later. Closes the connection.
    Overloaded = 9,
    /// The envelope token's signature is wrong: forged or corrupted.
    TokenForged = 10,
    /// The envelope token was issued to another user.
    TokenNotYours = 11,
    /// The gateway could not record the open durably; retry.
    Unavailable = 13,
    /// The cookie's signature is wrong or it belongs to another user.
    CookieInvalid = 20,
    /// A frame that is valid but not expected here (e.g. a second Hello).
    Unexpected = 21,
    /// A field is larger than the protocol allows (a cookie over `MAX_COOKIE_LEN`).
    /// The connection stays open.
    FieldTooLarge = 22,
    /// No `Hello` within the hello deadline of connecting. Closes the connection.
    HelloTimeout = 23,
    /// A frame was begun and not finished within the frame deadline. Closes the
    /// connection.
    FrameTimeout = 24,
    /// A share named someone who is not the opener's friend.
    NotFriend = 30,
    /// A share named the opener.
    ShareToSelf = 31,
    /// This pot was already shared (a pot is shared once).
    AlreadyShared = 32,
    /// A grab of a pot its opener has not shared.
    NotShared = 33,
    /// No pot by this id: unknown, or its open has not reached the backend yet (retry).
    NoSuchShare = 34,
    /// A share naming no friend, or more than [`MAX_SHARE_FRIENDS`].
    BadFriendList = 35,
    /// The opener tried to grab their own share.
    OwnShare = 36,
    /// A grab by a user the pot was not shared to.
    NotInvited = 37,
    /// Every part of the pot has been grabbed.
    NoPartsLeft = 39,
    /// The pot's lifetime is over.
    Expired = 40,
    /// The pot was recycled: what was left went back to the sponsor.
    Recycled = 41,
}

impl ErrorCode {
    /// Every code, for metrics that list each one from the start.
    pub const ALL: [ErrorCode; 28] = {
        use ErrorCode::*;
        [
            Malformed,
            TooLarge,
            UnsupportedVersion,
            NotHelloFirst,
            AuthFailed,
            HeartbeatTimeout,
            ShuttingDown,
            GatewayFull,
            Overloaded,
            TokenForged,
            TokenNotYours,
            Unavailable,
            CookieInvalid,
            Unexpected,
            FieldTooLarge,
            HelloTimeout,
            FrameTimeout,
            NotFriend,
            ShareToSelf,
            AlreadyShared,
            NotShared,
            NoSuchShare,
            BadFriendList,
            OwnShare,
            NotInvited,
            NoPartsLeft,
            Expired,
            Recycled,
        ]
    };

    /// Decodes a wire code; unknown codes are kept as `None` so old clients survive new codes.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match code {
            1 => Malformed,
            2 => TooLarge,
            3 => UnsupportedVersion,
            4 => NotHelloFirst,
            5 => AuthFailed,
            6 => HeartbeatTimeout,
            7 => ShuttingDown,
            8 => GatewayFull,
            9 => Overloaded,
            10 => TokenForged,
            11 => TokenNotYours,
            13 => Unavailable,
            20 => CookieInvalid,
            21 => Unexpected,
            22 => FieldTooLarge,
            23 => HelloTimeout,
            24 => FrameTimeout,
            30 => NotFriend,
            31 => ShareToSelf,
            32 => AlreadyShared,
            33 => NotShared,
            34 => NoSuchShare,
            35 => BadFriendList,
            36 => OwnShare,
            37 => NotInvited,
            39 => NoPartsLeft,
            40 => Expired,
            41 => Recycled,
            _ => return None,
        })
    }

    /// A short snake_case name for metrics labels and summaries.
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Malformed => "malformed",
            TooLarge => "too_large",
            UnsupportedVersion => "unsupported_version",
            NotHelloFirst => "not_hello_first",
            AuthFailed => "auth_failed",
            HeartbeatTimeout => "heartbeat_timeout",
            ShuttingDown => "shutting_down",
            GatewayFull => "gateway_full",
            Overloaded => "overloaded",
            TokenForged => "token_forged",
            TokenNotYours => "token_not_yours",
            Unavailable => "unavailable",
            CookieInvalid => "cookie_invalid",
            Unexpected => "unexpected",
            FieldTooLarge => "field_too_large",
            HelloTimeout => "hello_timeout",
            FrameTimeout => "frame_timeout",
            NotFriend => "not_friend",
            ShareToSelf => "share_to_self",
            AlreadyShared => "already_shared",
            NotShared => "not_shared",
            NoSuchShare => "no_such_share",
            BadFriendList => "bad_friend_list",
            OwnShare => "own_share",
            NotInvited => "not_invited",
            NoPartsLeft => "no_parts_left",
            Expired => "expired",
            Recycled => "recycled",
        }
    }
}
