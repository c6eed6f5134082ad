//! TLS and mutual TLS for the gRPC traffic (docs/protocol.md §6), with
//! tonic's rustls: a node serves with its certificate, and when it is given
//! a CA it also *requires* a client certificate signed by that CA. A
//! follower dialling its leader checks the leader's certificate against the
//! same CA and presents its own, so one set of three files per node (its
//! certificate, its key, the cluster's CA) makes every hop mutual.
//!
//! Loaded once at start from PEM files, so that a wrong path or a broken
//! file stops the start with one line instead of failing every connection.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Where a node's TLS material is.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// The CA that signs peers' certificates (PEM): verifies the leader a
    /// follower dials, and makes a server require client certificates.
    pub ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read the TLS {what} file {}", path.display())]
    Read {
        /// Which file (certificate, key, CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// A file does not hold what its flag says.
    #[error("the TLS {what} file {} holds no PEM {label}", path.display())]
    NotPem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold.
        label: &'static str,
    },
    /// Half of an identity.
    #[error("--tls-cert and --tls-key go together; only one was given")]
    HalfIdentity,
}

/// A node's TLS settings, checked and loaded.
#[derive(Debug, Clone)]
pub struct Tls {
    identity: Option<Identity>,
    ca: Option<Certificate>,
}

fn read_pem(what: &'static str, label: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let marker = format!("-----BEGIN {label}");
    let holds = std::str::from_utf8(&bytes).is_ok_and(|t| t.contains(&marker));
    if !holds {
        return Err(TlsError::NotPem {
            what,
            path: path.to_path_buf(),
            label,
        });
    }
    Ok(bytes)
}

impl Tls {
    /// TLS from `files`, or `None` when none is configured.
    pub fn load(files: &TlsFiles) -> Result<Option<Tls>, TlsError> {
        let identity = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(
                read_pem("certificate", "CERTIFICATE", cert)?,
                // Any PEM private key: PKCS#8 ("PRIVATE KEY"), RSA or EC.
                read_pem("key", "", key).and_then(|k| {
                    if String::from_utf8_lossy(&k).contains("PRIVATE KEY-----") {
                        Ok(k)
                    } else {
                        Err(TlsError::NotPem {
                            what: "key",
                            path: key.clone(),
                            label: "PRIVATE KEY",
                        })
                    }
                })?,
            )),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        let ca = match &files.ca {
            Some(ca) => Some(Certificate::from_pem(read_pem("CA", "CERTIFICATE", ca)?)),
            None => None,
        };
        Ok((identity.is_some() || ca.is_some()).then_some(Tls { identity, ca }))
    }

    /// For serving: this node's identity; client certificates required and
    /// checked against the CA when there is one. `None` when this node has
    /// no identity (a client-only setting).
    pub fn server(&self) -> Option<ServerTlsConfig> {
        let identity = self.identity.clone()?;
        let config = ServerTlsConfig::new().identity(identity);
        Some(match &self.ca {
            Some(ca) => config.client_ca_root(ca.clone()),
            None => config,
        })
    }

    /// For dialling a server: its certificate checked against the CA (the
    /// system's roots are not consulted), this node's identity presented.
    pub fn client(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(ca.clone());
        }
        if let Some(identity) = &self.identity {
            config = config.identity(identity.clone());
        }
        config
    }

    /// Whether servers require client certificates.
    pub fn mutual(&self) -> bool {
        self.ca.is_some() && self.identity.is_some()
    }
}
