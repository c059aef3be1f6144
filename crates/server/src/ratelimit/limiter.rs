//! The names of the rate limiters, shared by the limiters and the metrics that count their
//! refusals.

/// The limiters, named as the `limiter` label of `watchgrid_rate_limit_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limiter {
    /// Login attempts per client address.
    Login,
    /// Login attempts per account name and client address, so a flood from one address
    /// cannot lock the account's owner out everywhere else.
    LoginAccount,
    /// Logins shed because the password-hashing queue is full (not a token bucket).
    PasswordQueue,
    /// Device registrations per client address.
    Registration,
    /// Device registrations per onboarding token.
    RegistrationToken,
    /// Device registrations across all clients: a ceiling far above one address's share.
    RegistrationGlobal,
    /// Plain devices created per tenant.
    DeviceCreation,
    /// Every other unauthenticated endpoint, per client address.
    Unauthenticated,
}

impl Limiter {
    pub const ALL: [Limiter; 8] = [
        Limiter::Login,
        Limiter::LoginAccount,
        Limiter::PasswordQueue,
        Limiter::Registration,
        Limiter::RegistrationToken,
        Limiter::RegistrationGlobal,
        Limiter::DeviceCreation,
        Limiter::Unauthenticated,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limiter::Login => "login",
            Limiter::LoginAccount => "login_account",
            Limiter::PasswordQueue => "password_queue",
            Limiter::Registration => "registration",
            Limiter::RegistrationToken => "registration_token",
            Limiter::RegistrationGlobal => "registration_global",
            Limiter::DeviceCreation => "device_creation",
            Limiter::Unauthenticated => "unauthenticated",
        }
    }
}
