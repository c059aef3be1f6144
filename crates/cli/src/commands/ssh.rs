//! `watchgrid ssh`, `watchgrid ssh-proxy` and `watchgrid ssh-config`: log in to a device with a
//! short-lived certificate from the tenant's SSH CA, through the server's relay (no WireGuard
//! on the operator's machine), with strict host-key checking against the tenant's host CA.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use watchgrid_clientkit::files::PrivateDir;
use watchgrid_wire::{SignRequest, SshCaKeys};

use super::devices::find;
use super::Ctx;
use crate::client::ApiClient;
use crate::error::CliError;
use crate::{SshArgs, SshCertArgs, SshConfigArgs, SshProxyArgs};

/// A device named on the command line: `device`, or its Magic DNS name
/// `device.tenant.domain` (what ssh passes as `%h`), which also names the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub device: String,
    pub tenant: Option<String>,
}

pub fn parse_target(text: &str) -> Target {
    let mut labels = text.split('.');
    let device = labels.next().unwrap_or_default().to_string();
    Target {
        device,
        tenant: labels.next().map(str::to_string),
    }
}

/// `ctx` acting in the target's tenant when it names one and `--tenant` does not.
fn scoped(ctx: &Ctx, target: &Target) -> Ctx {
    Ctx {
        server: ctx.server.clone(),
        tenant: ctx.tenant.clone().or_else(|| target.tenant.clone()),
        json: ctx.json,
        token: ctx.token.clone(),
        config_dir: ctx.config_dir.clone(),
    }
}

/// The device's Magic DNS name: its name and the host CA's pattern `*.<tenant>.<domain>`.
fn fqdn(device: &str, ca: &SshCaKeys) -> String {
    format!("{device}{}", ca.host_pattern.trim_start_matches('*'))
}

/// The command line ssh runs as its ProxyCommand: this program's `ssh-proxy`, with the
/// same server and tenant.
fn proxy_command(ctx: &Ctx, client: &ApiClient, tenant: &str, target: &str) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "watchgrid".into());
    let mut parts = vec![
        shell_quote(&exe),
        "--server".into(),
        shell_quote(client.server().as_str()),
        "--tenant".into(),
        shell_quote(tenant),
    ];
    // A --token reaches the proxy through the environment (WATCHGRID_TOKEN), never argv.
    let _ = ctx;
    parts.push("ssh-proxy".into());
    parts.push(target.to_string());
    parts.join(" ")
}

/// Quote for the shell ssh runs ProxyCommand with.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

pub async fn ssh(ctx: &Ctx, args: SshArgs) -> Result<(), CliError> {
    let (user, host) = match args.destination.split_once('@') {
        Some((user, host)) => (Some(user.to_string()), host.to_string()),
        None => (None, args.destination.clone()),
    };
    let target = parse_target(&host);
    let ctx = scoped(ctx, &target);
    let dir = tempfile::Builder::new()
        .prefix("watchgrid-ssh-")
        .tempdir()
        .map_err(|e| CliError::Failed(format!("cannot create a temporary directory: {e}")))?;
    let files = PrivateDir::new(dir.path());
    // The key first (a bad -i is a usage error before any request): the user's (-i), or a
    // new Ed25519 key that exists only for this session.
    let (identity, public_key) = match &args.identity {
        Some(path) => (path.clone(), read_public_key(path)?),
        None => {
            let key = watchgrid_sshca::CaKey::generate("watchgrid ssh (ephemeral)")
                .map_err(|e| CliError::Failed(format!("cannot generate a key: {e}")))?;
            let private = key
                .to_openssh()
                .map_err(|e| CliError::Failed(format!("cannot encode the key: {e}")))?;
            files.write("id_ed25519", private.as_bytes())?;
            (files.file("id_ed25519"), key.public_key_openssh())
        }
    };
    let mut client = ctx.client()?;
    let device = find(&ctx, &mut client, &target.device).await?;
    let ca = client.ssh_ca().await?;
    let signed = client
        .sign_ssh_key(&SignRequest {
            public_key,
            principals: user.clone().map(|u| vec![u]),
            validity_secs: args.validity,
        })
        .await?;
    files.write(
        "id-cert.pub",
        format!("{}\n", signed.certificate).as_bytes(),
    )?;
    files.write("known_hosts", ca.known_hosts.as_bytes())?;
    // Revoked host certificates (a deleted device's, say) are in the tenant's KRL, which ssh
    // honours through RevokedHostKeys; known_hosts' @cert-authority alone trusts them all.
    files.write(REVOKED_HOST_KEYS, &client.ssh_krl().await?)?;
    let user = user.unwrap_or_else(|| signed.principals[0].clone());
    let tenant = ca.tenant.clone();
    let mut command = tokio::process::Command::new(&args.ssh_program);
    command
        .arg("-o")
        .arg("StrictHostKeyChecking=yes")
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            files.file("known_hosts").display()
        ))
        .arg("-o")
        .arg("GlobalKnownHostsFile=/dev/null")
        .arg("-o")
        .arg(format!(
            "RevokedHostKeys={}",
            files.file(REVOKED_HOST_KEYS).display()
        ))
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        .arg("-o")
        .arg(format!(
            "CertificateFile={}",
            files.file("id-cert.pub").display()
        ))
        .arg("-i")
        .arg(&identity)
        .arg("-o")
        .arg(format!(
            "ProxyCommand={}",
            proxy_command(&ctx, &client, &tenant, &device.name)
        ))
        .arg("-l")
        .arg(&user);
    for option in &args.ssh_option {
        command.arg("-o").arg(option);
    }
    command.arg(fqdn(&device.name, &ca));
    if !args.command.is_empty() {
        command.arg("--").args(&args.command);
    }
    if let Some(token) = &ctx.token {
        command.env("WATCHGRID_TOKEN", token);
    }
    let status = command
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|e| {
            CliError::Failed(format!(
                "cannot run {}: {e} (install OpenSSH's client)",
                args.ssh_program.display()
            ))
        })?;
    drop(dir);
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(CliError::ChildExit(u8::try_from(code).unwrap_or(1))),
        None => Err(CliError::Failed("ssh was killed by a signal".into())),
    }
}

/// The public key next to a private key file (`KEY.pub`); a missing one is a usage error
/// naming `--identity`.
fn read_public_key(identity: &Path) -> Result<String, CliError> {
    let public_path = PathBuf::from(format!("{}.pub", identity.display()));
    std::fs::read_to_string(&public_path)
        .map(|text| text.trim().to_string())
        .map_err(|e| {
            CliError::Usage(format!(
                "invalid value '{}' for '--identity': cannot read {}: {e}",
                identity.display(),
                public_path.display()
            ))
        })
}

/// `ssh-proxy`: relay standard input and output to the device's SSH port. First it brings the
/// known_hosts file that `ssh-config` wrote up to date, so a host-CA rotation needs nothing
/// from the user: ssh reads that file only after the key exchange, which cannot start before
/// the relay does.
pub async fn ssh_proxy(ctx: &Ctx, args: SshProxyArgs) -> Result<(), CliError> {
    let target = parse_target(&args.target);
    let ctx = scoped(ctx, &target);
    let mut client = ctx.client()?;
    // Before the device lookup, so that the revocation of a deleted device reaches the file.
    if let Err(err) = refresh_host_trust(&ctx, &mut client).await {
        // Not fatal: the files from `ssh-config` may still be right (nothing changed since).
        eprintln!(
            "watchgrid ssh-proxy: cannot refresh the known hosts or revoked keys file: {err}"
        );
    }
    let device = find(&ctx, &mut client, &target.device).await?;
    let upgraded = client.ssh_relay(&device.id).await?;
    let (mut from_device, mut to_device) = tokio::io::split(upgraded);
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let up = async {
        let _ = tokio::io::copy(&mut stdin, &mut to_device).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_device).await;
    };
    let down = async {
        let result = tokio::io::copy(&mut from_device, &mut stdout).await;
        let _ = tokio::io::AsyncWriteExt::flush(&mut stdout).await;
        result
    };
    // The session ends when the device side closes; stdin may stay open.
    tokio::select! {
        result = down => result.map(drop).map_err(|e| CliError::Failed(format!("the SSH relay broke: {e}"))),
        () = async { up.await; std::future::pending::<()>().await } => Ok(()),
    }
}

/// The KRL file `watchgrid ssh` writes next to its known_hosts file.
const REVOKED_HOST_KEYS: &str = "revoked_host_keys";

/// The known_hosts file `ssh-config` writes for a tenant, in the CLI's configuration directory.
fn known_hosts_file(tenant: &str) -> String {
    format!("known_hosts_{tenant}")
}

/// The KRL file `ssh-config` writes for a tenant (the block's `RevokedHostKeys`).
fn revoked_host_keys_file(tenant: &str) -> String {
    format!("revoked_host_keys_{tenant}")
}

/// If `ssh-config` created the tenant's files, rewrites the known_hosts file from
/// `GET /api/ssh/ca` when it differs (during a rotation it lists both host CAs) and the KRL
/// from `GET /api/ssh/krl` (revoked host certificates), each atomically.
async fn refresh_host_trust(ctx: &Ctx, client: &mut ApiClient) -> Result<(), CliError> {
    let Ok(dir) = &ctx.config_dir else {
        return Ok(());
    };
    let files = PrivateDir::new(dir.join("ssh"));
    let ca = client.ssh_ca().await?;
    let name = known_hosts_file(&ca.tenant);
    let Some(current) = files.read(&name)? else {
        return Ok(());
    };
    if current != ca.known_hosts {
        files.write(&name, ca.known_hosts.as_bytes())?;
    }
    files.write(
        &revoked_host_keys_file(&ca.tenant),
        &client.ssh_krl().await?,
    )?;
    Ok(())
}

/// `ssh-cert`: a certificate for the user's own key, written next to it as `<key>-cert.pub`.
pub async fn ssh_cert(ctx: &Ctx, args: SshCertArgs) -> Result<(), CliError> {
    let public_key = read_public_key(&args.identity)?;
    let mut client = ctx.client()?;
    let signed = client
        .sign_ssh_key(&SignRequest {
            public_key,
            principals: (!args.principal.is_empty()).then(|| args.principal.clone()),
            validity_secs: args.validity,
        })
        .await?;
    let cert_path = PathBuf::from(format!("{}-cert.pub", args.identity.display()));
    std::fs::write(&cert_path, format!("{}\n", signed.certificate))
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", cert_path.display())))?;
    if ctx.json {
        crate::output::json(&signed)?;
    } else {
        println!(
            "Certificate {} for {} (serial {}, valid until {}) written to {}",
            signed.key_id,
            signed.principals.join(", "),
            signed.serial,
            signed.valid_before,
            cert_path.display()
        );
    }
    Ok(())
}

/// `ssh-config`: write the tenant's known_hosts file and print an OpenSSH config block, so
/// that `ssh device.tenant.domain` works with the user's own key and a certificate the proxy
/// renews.
pub async fn ssh_config(ctx: &Ctx, args: SshConfigArgs) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let ca = client.ssh_ca().await?;
    let dir = match &ctx.config_dir {
        Ok(dir) => dir.join("ssh"),
        Err(why) => return Err(CliError::Failed(why.clone())),
    };
    let files = PrivateDir::new(&dir);
    let known_hosts = known_hosts_file(&ca.tenant);
    files.write(&known_hosts, ca.known_hosts.as_bytes())?;
    let revoked = revoked_host_keys_file(&ca.tenant);
    files.write(&revoked, &client.ssh_krl().await?)?;
    let proxy = proxy_command(ctx, &client, &ca.tenant, "%h");
    let identity = args.identity.display().to_string();
    let trust = HostTrust {
        known_hosts: &files.file(&known_hosts),
        revoked: &files.file(&revoked),
    };
    let block = config_block(&ca, &trust, &proxy, &identity);
    print!("{block}");
    Ok(())
}

/// The files a config block names for checking host keys.
struct HostTrust<'a> {
    known_hosts: &'a Path,
    revoked: &'a Path,
}

fn config_block(ca: &SshCaKeys, trust: &HostTrust<'_>, proxy: &str, identity: &str) -> String {
    format!(
        "# Watchgrid tenant {tenant}: `ssh <device>{suffix}`. Get a certificate for your key first\n\
         # (and whenever it expires): watchgrid --tenant {tenant} ssh-cert --identity {identity}\n\
         Host {pattern}\n\
         \x20   ProxyCommand {proxy}\n\
         \x20   StrictHostKeyChecking yes\n\
         \x20   UserKnownHostsFile {known_hosts}\n\
         \x20   RevokedHostKeys {revoked}\n\
         \x20   IdentityFile {identity}\n\
         \x20   CertificateFile {identity}-cert.pub\n",
        tenant = ca.tenant,
        suffix = ca.host_pattern.trim_start_matches('*'),
        pattern = ca.host_pattern,
        known_hosts = trust.known_hosts.display(),
        revoked = trust.revoked.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_device_and_maybe_its_tenant() {
        assert_eq!(
            parse_target("web-01"),
            Target {
                device: "web-01".into(),
                tenant: None
            }
        );
        assert_eq!(
            parse_target("web-01.acme.watchgrid.internal"),
            Target {
                device: "web-01".into(),
                tenant: Some("acme".into())
            }
        );
    }

    #[test]
    fn proxy_commands_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/usr/bin/watchgrid"), "/usr/bin/watchgrid");
        assert_eq!(shell_quote("/tmp/a b/it's"), r"'/tmp/a b/it'\''s'");
    }
}
