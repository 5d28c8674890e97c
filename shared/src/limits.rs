//! Size limits on everything that arrives from a network. One place, so the server enforces
//! and the clients respect the same numbers.

/// Largest REST request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest WebSocket frame (one client command) accepted, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest event a server sends to a device (a `hello` of a big contact list), in bytes.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Largest chat message body, in bytes of UTF-8.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest presence note, in bytes of UTF-8.
pub const MAX_NOTE_BYTES: usize = 512;
/// Longest display name, in bytes of UTF-8.
pub const MAX_DISPLAY_NAME_BYTES: usize = 128;
/// Largest history page a client may ask for.
pub const MAX_HISTORY_PAGE: u32 = 500;
/// Largest bus message accepted from Redis, in bytes.
pub const MAX_BUS_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest SDP accepted, in bytes.
pub const MAX_SDP_BYTES: usize = 32 * 1024;
/// Largest import file (`POST /api/v1/admin/import`), in bytes: 10,000 users with groups
/// and contacts fit with room to spare.
pub const MAX_IMPORT_BYTES: usize = 8 * 1024 * 1024;
/// Most users (rows) in one import file.
pub const MAX_IMPORT_ROWS: usize = 20_000;
