//! pht-policy
