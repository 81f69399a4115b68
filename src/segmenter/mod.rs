//! One timeline per stream: cuts segments at IDRs and parts on a fixed grid.
