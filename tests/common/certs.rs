//! Certificates for the etcd TLS tests and benchmark (`benches/etcd.rs`
//! includes this file), made with the `openssl` command in a temporary
//! directory: a CA, a server certificate for 127.0.0.1 (an IP SAN) and
//! localhost, a client certificate, and a second CA with a client
//! certificate of its own, which the first CA's members must refuse.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// Whether the `openssl` command is there (see `etcd::tool_available`).
pub fn openssl_available() -> bool {
    super::etcd::tool_available("openssl", "version", "openssl", "etcd TLS")
}

pub struct Certs {
    pub dir: TempDir,
}

/// A certificate and its key.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// Makes every certificate; panics (with openssl's words) if one
    /// cannot be made.
    pub fn make() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("caskfs-certs-")
            .tempdir()
            .expect("temp dir");
        let c = Certs { dir };
        c.make_ca("ca");
        c.make_ca("other-ca");
        c.signed(
            "ca",
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        c.signed("ca", "client", "extendedKeyUsage=clientAuth\n");
        c.signed_as(
            "ca",
            "client-no-cn",
            "/O=caskfs test client",
            "extendedKeyUsage=clientAuth\n",
        );
        c.signed("other-ca", "other-client", "extendedKeyUsage=clientAuth\n");
        c
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the members' and the client's certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Another CA, which signed nothing the members know.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    pub fn server(&self) -> Pair {
        self.pair("server")
    }

    pub fn client(&self) -> Pair {
        self.pair("client")
    }

    /// A client certificate with no CommonName: what etcd's JSON gateway
    /// takes from a client while auth is on.
    pub fn client_without_cn(&self) -> Pair {
        self.pair("client-no-cn")
    }

    /// A client certificate the other CA signed.
    pub fn other_client(&self) -> Pair {
        self.pair("other-client")
    }

    fn pair(&self, name: &str) -> Pair {
        Pair {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        }
    }

    fn make_ca(&self, name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=caskfs test {name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    /// A certificate `name` for `CN=name`, signed by CA `ca`, with the
    /// extensions `ext`.
    fn signed(&self, ca: &str, name: &str, ext: &str) {
        self.signed_as(ca, name, &format!("/CN={name}"), ext);
    }

    /// The same for subject `subject`.
    fn signed_as(&self, ca: &str, name: &str, subject: &str, ext: &str) {
        let ext_file = format!("{name}.ext");
        std::fs::write(self.path(&ext_file), ext).expect("extensions file");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `path` relative to the current directory (`../../tmp/...`), to show
/// that a URL's relative file names are taken from where a command ran.
pub fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().expect("current dir");
    let mut up = PathBuf::new();
    for _ in cwd.components().skip(1) {
        up.push("..");
    }
    up.join(path.strip_prefix("/").expect("an absolute path"))
}
