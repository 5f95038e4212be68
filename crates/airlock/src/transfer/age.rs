//! The `age` passphrase (scrypt) format of export files: the standard `age` tool
//! opens them too.

use std::io::{Read, Write};

use super::{TransferError, TransferResult};

/// scrypt work factor of export files: 2^18, what the `age` CLI uses (256 MiB,
/// about a second).
const SCRYPT_LOG_N: u8 = 18;
/// Highest work factor accepted on import (2^20: 1 GiB, a few seconds).
const SCRYPT_MAX_LOG_N: u8 = 20;

fn corrupt(reason: &str) -> TransferError {
    TransferError::Corrupt(reason.to_string())
}

/// Encrypts `plaintext` to `passphrase` (age scrypt recipient, binary format).
pub fn encrypt(plaintext: &[u8], passphrase: &str) -> TransferResult<Vec<u8>> {
    let mut recipient = age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase));
    recipient.set_work_factor(SCRYPT_LOG_N);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as _)).map_err(|e| {
            tracing::error!(error = %e, "age encryptor");
            TransferError::Internal("encryption")
        })?;
    let mut out = Vec::with_capacity(plaintext.len() + 1024);
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "age encryption");
        TransferError::Internal("encryption")
    };
    let mut writer = encryptor.wrap_output(&mut out).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    writer.finish().map_err(io)?;
    Ok(out)
}

/// Decrypts an age passphrase file; errors say which of wrong passphrase or
/// damaged file it is.
pub fn decrypt(file: &[u8], passphrase: &str) -> TransferResult<Vec<u8>> {
    use age::DecryptError as E;
    let header_err = |e: E| match e {
        E::UnknownFormat => corrupt("unknown age format version"),
        _ => corrupt("it is not an age-encrypted file, or it is cut short"),
    };
    let decryptor = age::Decryptor::new_buffered(file).map_err(header_err)?;
    if !decryptor.is_scrypt() {
        return Err(corrupt(
            "it is encrypted to a key, not with a passphrase (export files use a passphrase)",
        ));
    }
    let mut identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase));
    identity.set_max_work_factor(SCRYPT_MAX_LOG_N);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            E::DecryptionFailed | E::NoMatchingKeys | E::KeyDecryptionFailed => {
                TransferError::WrongPassphrase
            }
            E::ExcessiveWork { .. } => {
                corrupt("its passphrase work factor is far higher than this machine handles")
            }
            E::InvalidMac => corrupt("its header was altered"),
            _ => corrupt("its header is invalid"),
        })?;
    let mut out = Vec::with_capacity(file.len());
    reader
        .read_to_end(&mut out)
        .map_err(|_| corrupt("its contents were altered or cut short"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API code an error leaves with.
    fn code(e: TransferError) -> &'static str {
        crate::error::ApiError::from(e).code
    }

    #[test]
    fn age_round_trip_and_errors() {
        let file = encrypt(b"{\"a\":1}", "a long passphrase").unwrap();
        assert!(file.starts_with(b"age-encryption.org/v1\n-> scrypt "));
        assert_eq!(decrypt(&file, "a long passphrase").unwrap(), b"{\"a\":1}");
        assert_eq!(
            code(decrypt(&file, "another passphrase").err().unwrap()),
            "wrong_passphrase"
        );
        let mut tampered = file.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert_eq!(
            code(decrypt(&tampered, "a long passphrase").err().unwrap()),
            "corrupt_file"
        );
        assert_eq!(
            code(
                decrypt(&file[..file.len() - 5], "a long passphrase")
                    .err()
                    .unwrap()
            ),
            "corrupt_file"
        );
        assert_eq!(
            code(decrypt(b"hello", "a long passphrase").err().unwrap()),
            "corrupt_file"
        );
    }
}
