//! Which side of the link a layer serves.

use std::fmt;

/// Which side of the link a layer (or a proxy listener) serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Beside the server app: decodes requests, encodes responses.
    Inbound,
    /// Beside the client app: encodes requests, decodes responses.
    Outbound,
}

impl Role {
    /// The role's name in logs and configuration: `inbound` or `outbound`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Inbound => "inbound",
            Role::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Role {
    /// The [`Role::name`], so that logs read `role=inbound` as the configuration does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
