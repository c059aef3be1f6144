//! `devices list | show | rename | tag | delete | add-plain | config`: the devices of the
//! current tenant. `DEVICE` is a device's id or its name (see [`resolve`]).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use watchgrid_wire::{CreatePlainDevice, Device, DeviceKind, UpdateDevice};

use super::{all_pages, Ctx};
use crate::args::{self, TagList, MAX_PAGE};
use crate::client::{ApiClient, DeviceQuery};
use crate::error::CliError;
use crate::output::{self, PrivateFile, Table};
use crate::{DevicesCommand, DevicesListArgs, TagChange};

pub async fn run(ctx: &Ctx, command: DevicesCommand) -> Result<(), CliError> {
    match command {
        DevicesCommand::List(a) => list(ctx, a).await,
        DevicesCommand::Show { device } => {
            let mut client = ctx.client()?;
            let found = find(ctx, &mut client, &device).await?;
            show(ctx, &found, "")
        }
        DevicesCommand::Rename { device, new_name } => {
            let mut client = ctx.client()?;
            let found = find(ctx, &mut client, &device).await?;
            let update = UpdateDevice {
                name: Some(new_name),
                tags: None,
            };
            let renamed = client
                .update_device(&found.id, &update)
                .await
                .map_err(|e| no_device(ctx, &device, e))?;
            show(
                ctx,
                &renamed,
                &format!("Renamed device {} to {}", found.name, renamed.name),
            )
        }
        DevicesCommand::Tag { device, change } => tag(ctx, &device, &change).await,
        DevicesCommand::Delete { device } => {
            let mut client = ctx.client()?;
            let found = find(ctx, &mut client, &device).await?;
            client
                .delete_device(&found.id)
                .await
                .map_err(|e| no_device(ctx, &device, e))?;
            if !ctx.json {
                output::line(&output::escape(&format!(
                    "Deleted device {} (id {})",
                    found.name, found.id
                )))?;
            }
            Ok(())
        }
        DevicesCommand::AddPlain {
            name,
            tags,
            public_key,
            output,
        } => add_plain(ctx, name, tags, public_key, output.as_deref()).await,
        DevicesCommand::Config { device, output } => config(ctx, &device, output.as_deref()).await,
    }
}

async fn list(ctx: &Ctx, a: DevicesListArgs) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let query = DeviceQuery {
        limit: a.limit,
        cursor: None,
        status: a.status,
        tag: a.tag,
        name: a.name,
    };
    let (devices, more) = if a.limit.is_some() {
        let page = client
            .devices(&query)
            .await
            .map_err(|e| ctx.tenant_not_found(e))?;
        (page.items, page.next_cursor.is_some())
    } else {
        let devices = all_pages(async |cursor| {
            let page = DeviceQuery {
                limit: Some(MAX_PAGE),
                cursor,
                ..query.clone()
            };
            client.devices(&page).await
        })
        .await
        .map_err(|e| ctx.tenant_not_found(e))?;
        (devices, false)
    };
    if ctx.json {
        output::json(&devices)?;
    } else {
        output::print(&table(&devices))?;
    }
    if more {
        output::note("More devices exist: raise --limit, or leave it out to list every device.");
    }
    Ok(())
}

/// The device `device` names, or `None` if there is none in the tenant.
///
/// An argument shaped like an id is fetched by id. A name is looked up with the `name` filter
/// (which matches substrings) and must match exactly; an id-shaped argument that names no
/// device is looked up as a name too, since a device may be named like a UUID.
pub async fn resolve(client: &mut ApiClient, device: &str) -> Result<Option<Device>, CliError> {
    if args::is_uuid(device) {
        match client.device(device).await {
            Ok(found) => return Ok(Some(found)),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    if args::device_name(device).is_err() {
        return Ok(None);
    }
    let mut query = DeviceQuery {
        limit: Some(MAX_PAGE),
        name: Some(device.to_string()),
        ..DeviceQuery::default()
    };
    let mut seen = BTreeSet::new();
    loop {
        let page = client.devices(&query).await?;
        if let Some(found) = exact_match(page.items, device) {
            return Ok(Some(found));
        }
        match page.next_cursor {
            None => return Ok(None),
            Some(next) => {
                if !seen.insert(next.clone()) {
                    return Err(CliError::Failed(
                        "the server returned the same page cursor twice".to_string(),
                    ));
                }
                query.cursor = Some(next);
            }
        }
    }
}

/// The device named exactly `name` among the substring matches of a page.
fn exact_match(devices: Vec<Device>, name: &str) -> Option<Device> {
    devices.into_iter().find(|d| d.name == name)
}

/// [`resolve`], with "not found" as the command's error.
pub(crate) async fn find(
    ctx: &Ctx,
    client: &mut ApiClient,
    device: &str,
) -> Result<Device, CliError> {
    resolve(client, device)
        .await
        .map_err(|e| ctx.tenant_not_found(e))?
        .ok_or_else(|| not_found(ctx, device))
}

fn not_found(ctx: &Ctx, device: &str) -> CliError {
    CliError::Failed(format!("device {device} not found {}", ctx.in_tenant()))
}

/// A 404 for a device found a moment ago: it was deleted meanwhile.
fn no_device(ctx: &Ctx, device: &str, err: CliError) -> CliError {
    err.or_not_found(|| format!("device {device} not found {}", ctx.in_tenant()))
}

async fn tag(ctx: &Ctx, device: &str, change: &TagChange) -> Result<(), CliError> {
    if let Some(both) = change.add.iter().find(|t| change.remove.contains(t)) {
        return Err(CliError::Usage(format!(
            "invalid value {both:?} for '--remove': the tag is also given to '--add'"
        )));
    }
    let mut client = ctx.client()?;
    let found = find(ctx, &mut client, device).await?;
    let tags = changed_tags(&found.tags, change);
    args::check_tag_count(&tags).map_err(|why| {
        CliError::Usage(format!(
            "invalid value for '--add': the device would have {} tags, {why}",
            tags.len()
        ))
    })?;
    if !ctx.json {
        for missing in change.remove.iter().filter(|t| !found.tags.contains(t)) {
            output::note(&output::escape(&format!(
                "Device {} had no tag {missing}.",
                found.name
            )));
        }
    }
    let current: BTreeSet<&String> = found.tags.iter().collect();
    if tags.iter().collect::<BTreeSet<_>>() == current {
        let headline = format!("The tags of device {} are unchanged", found.name);
        return show(ctx, &found, &headline);
    }
    let update = UpdateDevice {
        name: None,
        tags: Some(tags),
    };
    let updated = client
        .update_device(&found.id, &update)
        .await
        .map_err(|e| no_device(ctx, device, e))?;
    let headline = format!(
        "The tags of device {} are now {}",
        updated.name,
        tags_text(&updated.tags)
    );
    show(ctx, &updated, &headline)
}

/// The tags after `change`: `--set` replaces them, then `--add` and `--remove` apply. Sorted
/// and without duplicates, as the server stores them.
fn changed_tags(current: &[String], change: &TagChange) -> Vec<String> {
    let mut tags: BTreeSet<String> = match &change.set {
        Some(TagList(set)) => set.iter().cloned().collect(),
        None => current.iter().cloned().collect(),
    };
    tags.extend(change.add.iter().cloned());
    for tag in &change.remove {
        tags.remove(tag);
    }
    tags.into_iter().collect()
}

async fn add_plain(
    ctx: &Ctx,
    name: String,
    tags: Vec<String>,
    public_key: Option<String>,
    output: Option<&Path>,
) -> Result<(), CliError> {
    args::check_tag_count(&tags)
        .map_err(|why| CliError::Usage(format!("invalid value for '--tag': {why}")))?;
    let mut client = ctx.client()?;
    // Before the request: the private key in the answer is shown only once, so a file that
    // cannot be written must fail before the device exists.
    let file = output.map(PrivateFile::create).transpose()?;
    let holds_private_key = public_key.is_none();
    let created = client
        .create_plain_device(&CreatePlainDevice {
            name,
            tags,
            public_key,
        })
        .await
        .map_err(|e| ctx.tenant_not_found(e))?;
    let d = &created.device;
    let described = format!(
        "Added plain device {} (id {}, overlay IP {})",
        d.name, d.id, d.overlay_ip
    );
    match file {
        Some(file) => {
            let path = file.path().display().to_string();
            file.commit(created.wireguard_config.as_bytes())
                .map_err(|e| {
                    CliError::Failed(format!(
                        "{}; device {} was created: if its configuration is lost, delete it \
                         (watchgrid devices delete {}) and add it again",
                        e.one_line(),
                        d.name,
                        d.name
                    ))
                })?;
            if ctx.json {
                return output::json(d);
            }
            output::line(&output::escape(&format!(
                "{described}; its wg-quick file is {path} (mode 0600)"
            )))
        }
        None => {
            if ctx.json {
                output::json(&created)?;
            } else {
                // The description goes to stderr, so that stdout is the file alone.
                output::note(&output::escape(&format!("{described}.")));
                print_config(&created.wireguard_config)?;
            }
            if holds_private_key {
                output::note(
                    "Warning: this configuration contains the device's private key, shown only \
                     this once: store it safely, or use --output FILE to write it with mode 0600.",
                );
            }
            Ok(())
        }
    }
}

/// What `devices config --json` prints.
#[derive(Serialize)]
struct DeviceConfig<'a> {
    device: &'a Device,
    wireguard_config: &'a str,
}

async fn config(ctx: &Ctx, device: &str, output: Option<&Path>) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let file = output.map(PrivateFile::create).transpose()?;
    let found = find(ctx, &mut client, device).await?;
    let config = client
        .device_wireguard_config(&found.id)
        .await
        .map_err(|e| no_device(ctx, device, e))?;
    match file {
        Some(file) => {
            let path = file.path().display().to_string();
            file.commit(config.as_bytes())?;
            if ctx.json {
                return output::json(&found);
            }
            output::line(&output::escape(&format!(
                "Wrote the wg-quick file of device {} to {path} (mode 0600)",
                found.name
            )))?;
        }
        None if ctx.json => {
            return output::json(&DeviceConfig {
                device: &found,
                wireguard_config: &config,
            })
        }
        None => print_config(&config)?,
    }
    if !has_private_key(&config) {
        output::note(
            "The file has no private key (the server does not keep it): put the device's own \
             in its PrivateKey line.",
        );
    }
    Ok(())
}

/// A wg-quick file on stdout, ending in a line break.
fn print_config(config: &str) -> Result<(), CliError> {
    let mut text = output::escape_text(config);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    output::print(&text)
}

/// Whether a wg-quick file sets `PrivateKey` (rather than a commented-out placeholder).
fn has_private_key(config: &str) -> bool {
    config.lines().any(|line| {
        line.trim_start()
            .strip_prefix("PrivateKey")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    })
}

pub fn kind_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Agent => "agent",
        DeviceKind::Plain => "plain",
    }
}

/// `a,b`, or `-` for none.
fn tags_text(tags: &[String]) -> String {
    if tags.is_empty() {
        "-".to_string()
    } else {
        tags.join(",")
    }
}

/// When the device last sent a heartbeat: `never` for an agent that has not yet, `-` for a
/// plain device, which sends none.
fn last_seen(device: &Device) -> String {
    match (&device.last_seen_at, device.kind) {
        (Some(at), _) => output::time(at),
        (None, DeviceKind::Plain) => "-".to_string(),
        (None, DeviceKind::Agent) => "never".to_string(),
    }
}

fn table(devices: &[Device]) -> String {
    let mut table = Table::new(&[
        "NAME",
        "STATUS",
        "OVERLAY IP",
        "KIND",
        "TAGS",
        "LAST SEEN",
        "ID",
    ]);
    for d in devices {
        table.row(vec![
            d.name.clone(),
            args::status_name(d.status).to_string(),
            d.overlay_ip.clone(),
            kind_name(d.kind).to_string(),
            tags_text(&d.tags),
            last_seen(d),
            d.id.clone(),
        ]);
    }
    table.render()
}

/// One device as `key  value` lines, after an optional headline.
fn show(ctx: &Ctx, device: &Device, headline: &str) -> Result<(), CliError> {
    if ctx.json {
        return output::json(device);
    }
    if !headline.is_empty() {
        output::line(&output::escape(headline))?;
    }
    output::print(&details(device))
}

fn details(d: &Device) -> String {
    let or_dash = |text: &str| output::or_dash(Some(text).filter(|t| !t.is_empty()));
    output::key_values(&[
        ("id", d.id.clone()),
        ("name", d.name.clone()),
        ("status", args::status_name(d.status).to_string()),
        ("kind", kind_name(d.kind).to_string()),
        ("overlay ip", d.overlay_ip.clone()),
        ("public key", d.public_key.clone()),
        ("hostname", or_dash(&d.hostname)),
        ("os", or_dash(&d.os)),
        ("agent version", or_dash(&d.agent_version)),
        ("tags", tags_text(&d.tags)),
        ("last seen", last_seen(d)),
        ("created", output::time(&d.created_at)),
    ])
}

#[cfg(test)]
mod tests;
