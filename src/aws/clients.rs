//! Client construction: the shared `aws-config` chain (profile, region, endpoints, retry
//! settings) with per-attempt timeouts, and the three SDK clients, Identity Center in its
//! own region and, when configured, with its own profile.

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use super::pacer::Pacer;

/// Loads the shared AWS configuration: the standard chain, with an optional profile and
/// region override, and a per-attempt timeout.
pub async fn load_sdk_config(
    profile: Option<&str>,
    region: Option<&str>,
    attempt_timeout: std::time::Duration,
) -> SdkConfig {
    // A stalled connection must end as a timeout (classified "may have applied"), never
    // hang a driver that keeps its lease alive.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .operation_attempt_timeout(attempt_timeout)
        .build();
    // The SDK's stalled-stream protection is for streaming bodies: our requests and answers
    // are small and the attempt timeout already ends a stall. Left on, it arms a 100 ms
    // check timer per call in flight, which costs a wake-up (and CPU) whenever answers
    // take longer than that.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

/// The three SDK clients, sharing one pacer (the account's quotas are shared).
#[derive(Clone, Debug)]
pub struct Clients {
    /// Amazon Connect.
    pub connect: SdkConnect,
    /// Identity Store.
    pub identity_store: SdkIdentityStore,
    /// SSO Admin.
    pub sso_admin: SdkSsoAdmin,
}

impl Clients {
    /// Builds clients from `sdk`, with Connect and Identity Center in their own regions when
    /// given (Identity Center's home region can differ from the Connect instance's).
    /// `ic_sdk`, when given, carries other credentials for the Identity Center side.
    pub fn new(
        sdk: &SdkConfig,
        ic_sdk: Option<&SdkConfig>,
        connect_region: Option<&str>,
        ic_region: Option<&str>,
        pacer: Pacer,
    ) -> Clients {
        // Every retry is ours (`super::retry`): the SDK's would re-send writes that may
        // have landed, and would not pace.
        let off = aws_smithy_types::retry::RetryConfig::disabled;
        let mut c = aws_sdk_connect::config::Builder::from(sdk).retry_config(off());
        if let Some(r) = connect_region {
            c = c.region(Region::new(r.to_string()));
        }
        let ic = ic_sdk.unwrap_or(sdk);
        let mut i = aws_sdk_identitystore::config::Builder::from(ic).retry_config(off());
        let mut s = aws_sdk_ssoadmin::config::Builder::from(ic).retry_config(off());
        if let Some(r) = ic_region {
            i = i.region(Region::new(r.to_string()));
            s = s.region(Region::new(r.to_string()));
        }
        Clients {
            connect: SdkConnect(aws_sdk_connect::Client::from_conf(c.build()), pacer.clone()),
            identity_store: SdkIdentityStore(
                aws_sdk_identitystore::Client::from_conf(i.build()),
                pacer.clone(),
            ),
            sso_admin: SdkSsoAdmin(aws_sdk_ssoadmin::Client::from_conf(s.build()), pacer),
        }
    }
}

/// [`ConnectApi`] over `aws_sdk_connect::Client`.
#[derive(Clone, Debug)]
pub struct SdkConnect(pub aws_sdk_connect::Client, pub Pacer);
/// [`IdentityStoreApi`] over `aws_sdk_identitystore::Client`.
#[derive(Clone, Debug)]
pub struct SdkIdentityStore(pub aws_sdk_identitystore::Client, pub Pacer);
/// [`SsoAdminApi`] over `aws_sdk_ssoadmin::Client`.
#[derive(Clone, Debug)]
pub struct SdkSsoAdmin(pub aws_sdk_ssoadmin::Client, pub Pacer);
