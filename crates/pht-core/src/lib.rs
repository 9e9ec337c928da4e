//! pht-core
