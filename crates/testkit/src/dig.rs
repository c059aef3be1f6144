//! Reading `dig`'s output in tests that query a real DNS server.

/// The response code (`NOERROR`, `NXDOMAIN`, ...) and the answer records' data from the output
/// of `dig +noall +comments +answer`; the status is `no answer` when dig got none.
pub fn status_and_answers(output: &str) -> (String, Vec<String>) {
    let status = output
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("no answer")
        .to_owned();
    // `owner TTL class type data...`
    let answers = output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
        .collect();
    (status, answers)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_status_and_answers() {
        let out = ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\
                   ;; flags: qr aa rd; QUERY: 1, ANSWER: 2\n\n\
                   www.acme.x. 60 IN CNAME web.acme.x.\nweb.acme.x. 60 IN A 100.64.0.2\n";
        assert_eq!(
            super::status_and_answers(out),
            (
                "NOERROR".to_owned(),
                vec!["web.acme.x.".to_owned(), "100.64.0.2".to_owned()]
            )
        );
        assert_eq!(super::status_and_answers("").0, "no answer");
    }
}
