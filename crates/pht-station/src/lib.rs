//! pht-station
