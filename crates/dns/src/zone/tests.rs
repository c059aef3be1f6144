//! Data-driven tests of zone resolution: name → rcode and answers, for the asker's tenant.

use super::*;

fn zone() -> MagicDns {
    let z = MagicDns::new(
        "watchgrid.internal",
        IpAddr::V4(Ipv4Addr::new(100, 64, 0, 1)),
        "100.64.0.0/10".parse().expect("net"),
    )
    .expect("zone");
    z.set_device("acme", "web", Ipv4Addr::new(100, 64, 0, 10))
        .expect("dev");
    z.set_device("acme", "db", Ipv4Addr::new(100, 64, 0, 11))
        .expect("dev");
    z.set_device("globex", "web", Ipv4Addr::new(100, 64, 0, 20))
        .expect("dev");
    z.set_records(
        "acme",
        "www",
        vec![Record::new(
            300,
            RecordData::Cname("web.acme.watchgrid.internal.".into()),
        )],
    )
    .expect("cname");
    z.set_records(
        "acme",
        "ext",
        vec![Record::new(300, RecordData::Cname("example.com.".into()))],
    )
    .expect("cname");
    z.set_records(
        "acme",
        "gone",
        vec![Record::new(
            300,
            RecordData::Cname("nothing.acme.watchgrid.internal.".into()),
        )],
    )
    .expect("cname");
    z.set_records(
        "acme",
        "web",
        vec![
            Record::new(120, RecordData::Txt("v=web".into())),
            Record::new(120, RecordData::Aaaa("fd00::10".parse().expect("v6"))),
        ],
    )
    .expect("txt");
    z.set_records(
        "acme",
        "_http._tcp.web",
        vec![Record::new(
            120,
            RecordData::Srv {
                priority: 10,
                weight: 5,
                port: 8080,
                target: "web.acme.watchgrid.internal.".into(),
            },
        )],
    )
    .expect("srv");
    z
}

/// Resolves `qname`/`qtype` as a client of `asker` and compares the rcode and the answer
/// section (rendered `owner type rdata`); `None` means out of zone.
fn check(
    z: &MagicDns,
    asker: &str,
    qname: &str,
    qtype: RecordType,
    expect: Option<(ResponseCode, &[&str])>,
) {
    let name = Name::from_ascii(qname).expect("name");
    let got = match z.resolve(asker, &name, qtype) {
        Resolution::OutOfZone => None,
        Resolution::Authoritative(a) => {
            if a.answers.is_empty() || a.rcode == NXDomain {
                assert!(
                    a.authority
                        .iter()
                        .any(|r| r.record_type() == RecordType::SOA),
                    "{qname} {qtype}: negative answer without SOA"
                );
            }
            let answers: Vec<String> = a
                .answers
                .iter()
                .map(|r| format!("{} {} {}", r.name(), r.record_type(), r.data()))
                .collect();
            Some((a.rcode, answers))
        }
    };
    let expect = expect.map(|(rcode, answers)| {
        (
            rcode,
            answers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    });
    assert_eq!(got, expect, "{asker} asks {qname} {qtype}");
}

use RecordType as T;
use ResponseCode::{NXDomain, NoError, ServFail};

#[test]
fn forward_names() {
    let z = zone();
    let web_a: &[&str] = &["web.acme.watchgrid.internal. A 100.64.0.10"];
    check(
        &z,
        "acme",
        "web.acme.watchgrid.internal.",
        T::A,
        Some((NoError, web_a)),
    );
    check(
        &z,
        "acme",
        "WEB.Acme.watchgrid.internal",
        T::A,
        Some((NoError, &["web.acme.watchgrid.internal. A 100.64.0.10"])),
    );
    check(
        &z,
        "acme",
        "web.acme.watchgrid.internal.",
        T::AAAA,
        Some((NoError, &["web.acme.watchgrid.internal. AAAA fd00::10"])),
    );
    check(
        &z,
        "acme",
        "web.acme.watchgrid.internal.",
        T::TXT,
        Some((NoError, &["web.acme.watchgrid.internal. TXT v=web"])),
    );
    // NODATA: the name exists without that type.
    check(
        &z,
        "acme",
        "db.acme.watchgrid.internal.",
        T::TXT,
        Some((NoError, &[])),
    );
    check(
        &z,
        "acme",
        "db.acme.watchgrid.internal.",
        T::MX,
        Some((NoError, &[])),
    );
    // NXDOMAIN.
    check(
        &z,
        "acme",
        "nope.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    // Another tenant's names do not exist for this asker, nor does its apex.
    check(
        &z,
        "acme",
        "web.globex.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "acme",
        "globex.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "globex",
        "web.globex.watchgrid.internal.",
        T::A,
        Some((NoError, &["web.globex.watchgrid.internal. A 100.64.0.20"])),
    );
    check(
        &z,
        "globex",
        "db.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    // Own tenant apex and empty non-terminals are NODATA.
    check(
        &z,
        "acme",
        "acme.watchgrid.internal.",
        T::A,
        Some((NoError, &[])),
    );
    check(
        &z,
        "nobody",
        "nobody.watchgrid.internal.",
        T::A,
        Some((NoError, &[])),
    );
    check(
        &z,
        "acme",
        "_tcp.web.acme.watchgrid.internal.",
        T::A,
        Some((NoError, &[])),
    );
    check(&z, "acme", "_http._tcp.web.acme.watchgrid.internal.", T::SRV, Some((NoError, &["_http._tcp.web.acme.watchgrid.internal. SRV 10 5 8080 web.acme.watchgrid.internal."])));
    // Outside the domain.
    check(&z, "acme", "example.com.", T::A, None);
    check(&z, "acme", "xwatchgrid.internal.", T::A, None);
}

#[test]
fn cnames() {
    let z = zone();
    check(
        &z,
        "acme",
        "www.acme.watchgrid.internal.",
        T::A,
        Some((
            NoError,
            &[
                "www.acme.watchgrid.internal. CNAME web.acme.watchgrid.internal.",
                "web.acme.watchgrid.internal. A 100.64.0.10",
            ],
        )),
    );
    check(
        &z,
        "acme",
        "www.acme.watchgrid.internal.",
        T::CNAME,
        Some((
            NoError,
            &["www.acme.watchgrid.internal. CNAME web.acme.watchgrid.internal."],
        )),
    );
    check(
        &z,
        "acme",
        "ext.acme.watchgrid.internal.",
        T::A,
        Some((
            NoError,
            &["ext.acme.watchgrid.internal. CNAME example.com."],
        )),
    );
    check(
        &z,
        "acme",
        "gone.acme.watchgrid.internal.",
        T::A,
        Some((
            NXDomain,
            &["gone.acme.watchgrid.internal. CNAME nothing.acme.watchgrid.internal."],
        )),
    );
    z.set_records(
        "acme",
        "loop",
        vec![Record::new(
            5,
            RecordData::Cname("loop.acme.watchgrid.internal.".into()),
        )],
    )
    .expect("loop");
    let name = Name::from_ascii("loop.acme.watchgrid.internal.").expect("name");
    match z.resolve("acme", &name, T::A) {
        Resolution::Authoritative(a) => assert_eq!(a.rcode, ServFail),
        Resolution::OutOfZone => panic!("in zone"),
    }
}

#[test]
fn apex() {
    let z = zone();
    let name = Name::from_ascii("watchgrid.internal.").expect("name");
    let Resolution::Authoritative(soa) = z.resolve("acme", &name, T::SOA) else {
        panic!()
    };
    assert_eq!(soa.rcode, NoError);
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(soa.answers[0].record_type(), T::SOA);
    check(
        &z,
        "acme",
        "watchgrid.internal.",
        T::NS,
        Some((NoError, &["watchgrid.internal. NS ns.watchgrid.internal."])),
    );
    check(
        &z,
        "acme",
        "watchgrid.internal.",
        T::A,
        Some((NoError, &[])),
    );
    check(
        &z,
        "acme",
        "ns.watchgrid.internal.",
        T::A,
        Some((NoError, &["ns.watchgrid.internal. A 100.64.0.1"])),
    );
    check(
        &z,
        "acme",
        "ns.watchgrid.internal.",
        T::AAAA,
        Some((NoError, &[])),
    );
}

#[test]
fn reverse() {
    let z = zone();
    check(
        &z,
        "acme",
        "10.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((
            NoError,
            &["10.0.64.100.in-addr.arpa. PTR web.acme.watchgrid.internal."],
        )),
    );
    check(
        &z,
        "acme",
        "10.0.64.100.in-addr.arpa.",
        T::A,
        Some((NoError, &[])),
    );
    // Another tenant's device, and a free address: NXDOMAIN.
    check(
        &z,
        "acme",
        "20.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "acme",
        "99.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "globex",
        "20.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((
            NoError,
            &["20.0.64.100.in-addr.arpa. PTR web.globex.watchgrid.internal."],
        )),
    );
    // Outside the overlay: not ours.
    check(&z, "acme", "1.0.168.192.in-addr.arpa.", T::PTR, None);
    check(&z, "acme", "64.100.in-addr.arpa.", T::PTR, None);
}

#[test]
fn changes() {
    let z = zone();
    let serial = z.serial();
    z.set_device("acme", "web", Ipv4Addr::new(100, 64, 0, 12))
        .expect("move");
    assert!(z.serial() > serial);
    check(
        &z,
        "acme",
        "web.acme.watchgrid.internal.",
        T::A,
        Some((NoError, &["web.acme.watchgrid.internal. A 100.64.0.12"])),
    );
    check(
        &z,
        "acme",
        "10.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((NXDomain, &[])),
    );
    z.remove_device("acme", "db").expect("remove");
    check(
        &z,
        "acme",
        "db.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "acme",
        "11.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((NXDomain, &[])),
    );
    z.remove_records("acme", "www").expect("remove");
    check(
        &z,
        "acme",
        "www.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    // Conflicts and bad input leave the zone unchanged.
    let serial = z.serial();
    assert_eq!(
        z.set_records(
            "acme",
            "web",
            vec![Record::new(5, RecordData::Cname("x.example.".into()))]
        ),
        Err(DnsError::CnameConflict("web".into()))
    );
    assert_eq!(
        z.set_device("acme", "ext", Ipv4Addr::new(100, 64, 0, 30)),
        Err(DnsError::CnameConflict("ext".into()))
    );
    assert_eq!(
        z.set_device("acme", "out", Ipv4Addr::new(10, 0, 0, 1)),
        Err(DnsError::OutsideOverlay(Ipv4Addr::new(10, 0, 0, 1)))
    );
    assert!(z
        .set_device("ac me", "x", Ipv4Addr::new(100, 64, 0, 31))
        .is_err());
    assert_eq!(z.serial(), serial);
    z.remove_tenant("acme").expect("tenant");
    check(
        &z,
        "acme",
        "web.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
}

#[test]
fn txt_split() {
    assert_eq!(split_txt(""), vec![String::new()]);
    let parts = split_txt(&"a".repeat(600));
    assert_eq!(
        parts.iter().map(String::len).collect::<Vec<_>>(),
        vec![255, 255, 90]
    );
    let parts = split_txt(&"é".repeat(200));
    assert!(parts.iter().all(|p| p.len() <= 255));
    assert_eq!(parts.concat(), "é".repeat(200));
}

#[test]
fn replace_devices_keeps_records_and_skips_bad_devices() {
    let z = zone();
    let serial = z.serial();
    let errors = z.replace_devices([
        (
            "acme".to_owned(),
            "api".to_owned(),
            Ipv4Addr::new(100, 64, 0, 30),
        ),
        (
            "acme".to_owned(),
            "www".to_owned(),
            Ipv4Addr::new(100, 64, 0, 31),
        ),
        (
            "acme".to_owned(),
            "bad_name".to_owned(),
            Ipv4Addr::new(100, 64, 0, 32),
        ),
        (
            "acme".to_owned(),
            "far".to_owned(),
            Ipv4Addr::new(10, 0, 0, 1),
        ),
        (
            "initech".to_owned(),
            "pc".to_owned(),
            Ipv4Addr::new(100, 64, 0, 40),
        ),
    ]);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.contains(&DnsError::CnameConflict("www".into())));
    assert!(errors.contains(&DnsError::OutsideOverlay(Ipv4Addr::new(10, 0, 0, 1))));
    assert!(z.serial() > serial);
    check(
        &z,
        "acme",
        "api.acme.watchgrid.internal.",
        T::A,
        Some((NoError, &["api.acme.watchgrid.internal. A 100.64.0.30"])),
    );
    check(
        &z,
        "initech",
        "40.0.64.100.in-addr.arpa.",
        T::PTR,
        Some((
            NoError,
            &["40.0.64.100.in-addr.arpa. PTR pc.initech.watchgrid.internal."],
        )),
    );
    // The old devices are gone, their custom records stay.
    check(
        &z,
        "acme",
        "db.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "globex",
        "web.globex.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "acme",
        "web.acme.watchgrid.internal.",
        T::TXT,
        Some((NoError, &["web.acme.watchgrid.internal. TXT v=web"])),
    );
}

#[test]
fn check_records_is_a_dry_run() {
    let z = zone();
    let serial = z.serial();
    let cname = |t: &str| Record::new(60, RecordData::Cname(t.into()));
    assert_eq!(
        z.check_records("acme", "db", &[cname("web.acme.watchgrid.internal.")]),
        Err(DnsError::CnameConflict("db".into())),
        "a device holds the name"
    );
    assert!(z
        .check_records("acme", "new", &[cname("web.acme.watchgrid.internal.")])
        .is_ok());
    assert!(z
        .check_records("acme", "x", &[Record::new(0, RecordData::Txt("t".into()))])
        .is_err());
    assert_eq!(z.serial(), serial, "nothing changed");
    check(
        &z,
        "acme",
        "new.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    assert!(z.has_cname("acme", "www"));
    assert!(!z.has_cname("acme", "web"));
    assert!(!z.has_cname("globex", "www"));
}

#[test]
fn replace_records_keeps_devices_and_drops_records_not_given() {
    let z = zone();
    let errors = z.replace_records([
        (
            "acme".to_owned(),
            "api".to_owned(),
            vec![Record::new(60, RecordData::A(Ipv4Addr::new(192, 0, 2, 1)))],
        ),
        (
            "acme".to_owned(),
            "db".to_owned(),
            vec![Record::new(
                60,
                RecordData::Cname("web.acme.watchgrid.internal.".into()),
            )],
        ),
        (
            "acme".to_owned(),
            "bad".to_owned(),
            vec![Record::new(0, RecordData::A(Ipv4Addr::new(192, 0, 2, 1)))],
        ),
    ]);
    assert_eq!(
        errors,
        [
            DnsError::CnameConflict("db".into()),
            DnsError::InvalidTtl(0)
        ]
    );
    check(
        &z,
        "acme",
        "api.acme.watchgrid.internal.",
        T::A,
        Some((NoError, &["api.acme.watchgrid.internal. A 192.0.2.1"])),
    );
    // Records not in the new set are gone (www was a CNAME), devices stay.
    check(
        &z,
        "acme",
        "www.acme.watchgrid.internal.",
        T::A,
        Some((NXDomain, &[])),
    );
    check(
        &z,
        "acme",
        "db.acme.watchgrid.internal.",
        T::A,
        Some((NoError, &["db.acme.watchgrid.internal. A 100.64.0.11"])),
    );
    check(
        &z,
        "globex",
        "web.globex.watchgrid.internal.",
        T::A,
        Some((NoError, &["web.globex.watchgrid.internal. A 100.64.0.20"])),
    );
}
