//! pht-hub
