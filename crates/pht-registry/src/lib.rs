//! pht-registry
