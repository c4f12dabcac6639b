//! Draw Things' own root certificate, "Draw Things Root CA" (self-signed, RSA 4096, valid from
//! 2025-07-31 to 2035-07-29): the app's API server in gRPC mode and gRPCServerCLI present a
//! certificate for the name `localhost` signed by it, and Draw Things' clients trust it and
//! check that name, whatever the address. A public certificate (a public key and its
//! signature), as Draw Things publishes it for its clients.

/// The certificate, PEM.
pub(super) const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIFLTCCAxWgAwIBAgIUQweTrxA8aJWp2kiyf/6aqoxN3/8wDQYJKoZIhvcNAQEL
BQAwHjEcMBoGA1UEAwwTRHJhdyBUaGluZ3MgUm9vdCBDQTAeFw0yNTA3MzExNzE5
MzFaFw0zNTA3MjkxNzE5MzFaMB4xHDAaBgNVBAMME0RyYXcgVGhpbmdzIFJvb3Qg
Q0EwggIiMA0GCSqGSIb3DQEBAQUAA4ICDwAwggIKAoICAQDe/RKAuabH2pEadZj6
JRTOaEIMYXsAI7ZIG+LSAEkyK/QZAMdLq+wBq6uJDIEvTXMyyhNgkI3oUnS2PJqi
y9lzGAh1s2y6MDG17BFboyriW0y6BKd42amX/g9A40ZC1cBs2NI9e0zjy/vhHLw1
EHK1XDLsIYAZvqQLJR3zRslHTHN6BysNWNmO/s1myLHQzbjyg4+/JHqma5Xatz0W
I5Wi6zxu/G1IdWeO6tlWWBSArDbhru+rb2U9p9/jKGW7fOom7sH9oBpj7q+xcrr5
h2Aoam4xRqxc3SG7TRc1inEki86/FoWCARSqGo2t7q/brkwwGbeZsuwKhIuhWGzW
CJKp0NvD11HyCqsJsLMTx9PXzEsCDFsios+zI6zu1aIVomO5h8d59oxMGEvNozIc
gSHJI3pCiHmJt0o9xoRi0UGiB6PP3k4ZzxTV30wt0oMOzS8dgMdl1u0zpAc2aEGG
4cdWQaDP2UgZlNQyzGbGUC2Q2ln1ghTlEBAs23/yDZyEbtWj+Qo1Isk80CXISs8/
H4cdM9Xw/Rt5fGxSaNzHJZJ9gK8YFI0z7IDiQp9nWkMqyDhGjhT4ZR847Nz52gcK
zuqmSK6B7ksumilchQ8hq79VAAvZqQoyVIvLvkbb6pXZbH0qTK5yk0YQVJ49JU1L
XnB4Iu8IuDxTLmtW2WoCjUZaqQIDAQABo2MwYTAdBgNVHQ4EFgQUhmFk2qHWAU6/
3u6FyCnk2vaV0fswHwYDVR0jBBgwFoAUhmFk2qHWAU6/3u6FyCnk2vaV0fswDwYD
VR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8EBAMCAQYwDQYJKoZIhvcNAQELBQADggIB
ADpfCKvX3XEa99/9buJtKCdpCAAy+D3g5gcGangx/VP6Tnp09dNar0dnLyjqlYSY
u7U3Liv5YUCZ+rslCpsoKi/CR2homQ09QMIn4LcROc5VunV1s5fSQULM5gsedAi1
HoeIeXKxPBBHkZ2xYuIIxZ9qKajC0/X+plIjasru7M+sEnvs+5JrhDsZl/FTynf/
YSQiFVsvQfbGXr5KlXlPSeC0RKiA1U+Ve5wvatoZOVYXbFSmJGWcizjbtCZI4zl1
zWCrHfLrex56+4coRmpz1JREoSTWPl+CBPRexNcMjPYRLy+7FHQMvUTm3lKlK6TI
yekBhjL02lkLDgf7DMfbxhKQ+JYq/g36dLeyNlh2xIpImc/+ZQpYVchIxgqBDnc7
eFteMla15nhrMPdomR89HIGg8WDsJTGG78QXpK1ofYRqz9q5SXrimnrD2VIN4Bxn
DkakgmorATZrm75PY6WS0akybNqSvsgVXhhLCbRae7eoTllfL9jN/rWvMhntLafU
0gTVfMf/T6jC4xoHPSaxYKRKmcwtnvOZ5d/V5lCXxk9ani+0MWMzb3612dyxH+F1
AdYK/UnXBU6G3CNKn5jWKOMcurcHEK8hfgBMFcnw1jCYsoVgYm2Wnz0TWKA4BfHa
cqVZMcGjBArAfKcRInClJwa5yYO+XEyLBA4E7I8H2M2I
-----END CERTIFICATE-----
";

/// The name its server certificates are for, which the client checks.
pub(super) const SERVER_NAME: &str = "localhost";

#[cfg(test)]
mod tests {
    use base64::Engine;

    #[test]
    fn the_certificate_is_draw_things_root_ca_in_der() {
        let body: String = super::PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        // A DER SEQUENCE of 0x52d bytes, as its header says.
        assert_eq!(&der[..4], &[0x30, 0x82, 0x05, 0x2d]);
        assert_eq!(der.len(), 4 + 0x52d);
        let subject = b"Draw Things Root CA";
        let found = der.windows(subject.len()).filter(|w| w == subject).count();
        assert_eq!(found, 2, "issuer and subject");
    }
}
