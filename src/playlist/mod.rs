//! Playlist rendering: a pure function of a stream index snapshot and the request.
