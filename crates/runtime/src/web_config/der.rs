//! Just enough DER to read a client certificate's subject alternative names
//! (`client_allowed_sans`). Its input can be any bytes a client sends (with
//! `RequireAnyClientCert` nothing has checked the certificate before), so it only slices
//! within bounds and gives up on anything it does not expect; the fuzz target
//! `client_cert_sans` (`fuzz/`, which compiles this file in by path) holds it to that.
//! It depends on `std` alone.

/// The first TLV of `input`: tag, contents and what follows. None if malformed (or a
/// multi-byte tag or a length over 4 bytes, which no certificate field uses).
pub fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Every TLV in `input`, which must be a whole number of them.
fn each(mut input: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tag, value, rest) = tlv(input)?;
        out.push((tag, value));
        input = rest;
    }
    Some(out)
}

/// The subjectAltName extension's OID, 2.5.29.17.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The DNS names, e-mail addresses, IP addresses and URIs of the certificate's subject
/// alternative names, as Go's `x509.Certificate` lists them (`DNSNames`, `EmailAddresses`,
/// `IPAddresses` printed by `net.IP.String`, `URIs`). None if the certificate is
/// malformed; empty without the extension.
pub fn subject_alt_names(cert: &[u8]) -> Option<Vec<String>> {
    let (0x30, certificate, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(certificate)? else {
        return None;
    };
    let mut out = Vec::new();
    for (tag, value) in each(tbs)? {
        // extensions [3] EXPLICIT SEQUENCE OF Extension
        if tag != 0xa3 {
            continue;
        }
        let (0x30, extensions, _) = tlv(value)? else {
            return None;
        };
        for (tag, ext) in each(extensions)? {
            if tag != 0x30 {
                return None;
            }
            let fields = each(ext)?;
            let (Some(&(0x06, oid)), Some(&(0x04, san))) = (fields.first(), fields.last()) else {
                return None;
            };
            if oid != SAN_OID {
                continue;
            }
            let (0x30, names, _) = tlv(san)? else {
                return None;
            };
            for (tag, name) in each(names)? {
                match tag {
                    // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]
                    0x81 | 0x82 | 0x86 => {
                        out.push(String::from_utf8_lossy(name).into_owned());
                    }
                    // iPAddress [7]
                    0x87 => {
                        let ip = match name.len() {
                            4 => std::net::IpAddr::from(<[u8; 4]>::try_from(name).ok()?),
                            16 => {
                                let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(name).ok()?);
                                // Go prints an IPv4-mapped address as IPv4.
                                match v6.to_ipv4_mapped() {
                                    Some(v4) => v4.into(),
                                    None => v6.into(),
                                }
                            }
                            _ => return None,
                        };
                        out.push(ip.to_string());
                    }
                    _ => {}
                }
            }
        }
    }
    Some(out)
}
