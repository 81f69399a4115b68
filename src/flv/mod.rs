//! FLV audio/video tag bodies (legacy and Enhanced RTMP) to codec configurations and frames.
