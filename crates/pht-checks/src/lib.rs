//! pht-checks
