//! The enumerated states and kinds of rows, stored as text on both backends: a value the
//! code does not know is a decode error naming it, never a silently mis-read string.

/// Declare an enum stored as one of a fixed set of texts, with `as_str`, `FromStr` and the
/// sqlx impls for every backend whose `String` is a type.
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($name), " {:?}"), other)),
                }
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

text_enum! {
    /// What kind of device a row is.
    pub enum DeviceKind {
        /// Runs `watchgrid-agent`: enrolled with an onboarding token, heartbeats.
        Agent = "agent",
        /// A plain WireGuard peer an admin created (a phone, a router): no agent.
        Plain = "plain",
    }
}

text_enum! {
    /// What an SSH certificate (or CA) is for.
    pub enum CertKind {
        User = "user",
        Host = "host",
    }
}

text_enum! {
    /// Where a CA key is in its life.
    pub enum CaState {
        /// Signs new certificates (one per tenant and kind).
        Active = "active",
        /// Replaced by a rotation; still trusted until `retire_at`.
        Retiring = "retiring",
        /// No longer trusted anywhere.
        Retired = "retired",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_unknown_ones_are_named() {
        for kind in DeviceKind::ALL {
            assert_eq!(kind.as_str().parse::<DeviceKind>(), Ok(*kind));
        }
        for state in CaState::ALL {
            assert_eq!(state.as_str().parse::<CaState>(), Ok(*state));
        }
        for kind in CertKind::ALL {
            assert_eq!(kind.to_string().parse::<CertKind>(), Ok(*kind));
        }
        assert_eq!(
            "router".parse::<DeviceKind>(),
            Err("unknown DeviceKind \"router\"".to_owned())
        );
    }
}
