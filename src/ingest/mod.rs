//! One publishing connection end to end: RTMP session → FLV → segmenter → store.
