use super::*;
use crate::formats::DjangoVersion;

const PW: &str = "correct horse";

fn all_hashers(version: DjangoVersion) -> Hashers {
    let paths: Vec<&str> = KNOWN_HASHERS.iter().map(|(p, _)| *p).collect();
    Hashers::from_setting(&paths, version).unwrap()
}

/// Real Django output from shared/spec/hashers.md §4, with the version that produced it.
const DJANGO_HASHES: &[(DjangoVersion, &str)] = &[
    (DjangoVersion::V4_2, "pbkdf2_sha256$600000$abcdefghijklmnopqrstuv$YwuuPhVNfWRMu1PCdmnmSxN0KZ3ZlgOJcLi7hu9+CkI="),
    (DjangoVersion::V5_2, "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$RQsDuUkUYsVKKMGEVf7KhP1xnDLlZ9RiOO63KN0aAbE="),
    (DjangoVersion::V6_0, "pbkdf2_sha256$1200000$abcdefghijklmnopqrstuv$qpvfi7nfV+GcruFoiHOF6ayd/lqEJ/ciAplQGJMa1zQ="),
    (DjangoVersion::V6_1, "pbkdf2_sha256$1500000$abcdefghijklmnopqrstuv$pNqHYgQMzZwLzZH8KDx+/7Hu5G0/nkZvE3+OniqKI9o="),
    (DjangoVersion::V4_2, "pbkdf2_sha1$600000$abcdefghijklmnopqrstuv$PMkDY9UAFowqjRQEMXKpCLr+d1Q="),
    (DjangoVersion::V5_2, "pbkdf2_sha1$1000000$abcdefghijklmnopqrstuv$gsrJP1Q5MoohV+k8RPhQCnZJ60s="),
    (DjangoVersion::V5_2, "argon2$argon2id$v=19$m=102400,t=2,p=8$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dg$cbYV8dbAeaxTGgeSUds3eWl/1GYuxCEvQmo1aJcgrhc"),
    (DjangoVersion::V5_2, "bcrypt_sha256$$2b$12$abcdefghijklmnopqrstuurByPinJWI/V/0c5apkEb2KJQv7f.gZO"),
    (DjangoVersion::V5_2, "bcrypt$$2b$12$abcdefghijklmnopqrstuuFDJRuYeKkCzo3Wy7h8SxhBSHBAHiPK2"),
    (DjangoVersion::V4_2, "scrypt$16384$abcdefghijklmnopqrstuv$8$1$NSnoIm3vLpDMiLvc+TzkKtXEJGSHphhvkGRpzYQHyvEXGr+784hQA71c+qDUQtSeGdsdq/SfW8IG8hQUkeJTJQ=="),
    (DjangoVersion::V5_2, "scrypt$16384$abcdefghijklmnopqrstuv$8$5$2CyFzwiSp10903TARkWJsyfC9Q3aeX0RvkHqKxHNeBplPnTz1lYfWZu5pEy7/A6r1KH53voY5f8NgFIZC1gWWA=="),
    (DjangoVersion::V5_2, "md5$abcdefghijklmnopqrstuv$02144cc061e1c896b28fdbca2ef32806"),
    (DjangoVersion::V4_2, "sha1$abcdefghijklmnopqrstuv$4e47d0814a3787b3773b25c8e8d86ce8aa5d9747"),
    (DjangoVersion::V4_2, "sha1$$2f9e53523b62abc141a2b4d6019d23cba835dbd0"),
    (DjangoVersion::V4_2, "3cb4e732631f47e6eb961f34554b7cde"),
    (DjangoVersion::V4_2, "md5$$3cb4e732631f47e6eb961f34554b7cde"),
    (DjangoVersion::V4_2, "crypt$$abhfCpXqd4GrI"),
];

#[test]
fn django_hashes_verify_and_reencode_identically() {
    for (version, encoded) in DJANGO_HASHES {
        let hashers = all_hashers(*version);
        let hasher = hashers.identify(encoded).unwrap();
        assert!(hasher.verify(PW, encoded).unwrap(), "{encoded}");
        assert!(!hasher.verify("wrong horse", encoded).unwrap(), "{encoded}");
        // Where the salt is ours to pass, encoding reproduces Django's string exactly.
        let salt = match hasher.algorithm() {
            "bcrypt" | "bcrypt_sha256" => Some("$2b$12$abcdefghijklmnopqrstuu"),
            "argon2" | "pbkdf2_sha256" | "pbkdf2_sha1" | "scrypt" | "md5" | "sha1" => {
                Some("abcdefghijklmnopqrstuv")
            }
            _ => None,
        };
        if let Some(salt) = salt {
            assert_eq!(&hasher.encode(PW, salt).unwrap(), encoded);
        }
    }
}

#[test]
fn old_argon2i_hash_verifies_and_must_update() {
    let h = Argon2Hasher::default();
    let old = "argon2$argon2i$v=19$m=512,t=2,p=2$YWJjZGVmZ2hpamts$uIH13wSY9p0fhnvlvdL5eg";
    assert!(h.verify(PW, old).unwrap());
    assert!(h.must_update(old).unwrap());
    assert!(!h.must_update(DJANGO_HASHES[6].1).unwrap());
}

#[test]
fn must_update_follows_django() {
    let v52 = Hashers::django_default(DjangoVersion::V5_2);
    let p = v52.preferred();
    assert!(!p.must_update(DJANGO_HASHES[1].1).unwrap());
    // Higher iterations than preferred also rewrite (hashers.md §5).
    assert!(p.must_update(DJANGO_HASHES[2].1).unwrap());
    assert!(p.must_update(DJANGO_HASHES[0].1).unwrap());
    // A 12-character salt (Django ≤ 3.1) is too short.
    assert!(p
        .must_update("pbkdf2_sha256$1000000$abcdefghijkl$x")
        .unwrap());
    let r = v52.verify_password(Some(PW), DJANGO_HASHES[0].1);
    assert_eq!(
        r,
        Verification {
            valid: true,
            must_update: true
        }
    );
    let r = v52.verify_password(Some(PW), DJANGO_HASHES[6].1);
    assert_eq!(
        r,
        Verification {
            valid: true,
            must_update: true
        },
        "other algorithm than preferred"
    );
}

#[test]
fn only_listed_hashers_verify() {
    let v52 = Hashers::django_default(DjangoVersion::V5_2);
    let md5 = "md5$abcdefghijklmnopqrstuv$02144cc061e1c896b28fdbca2ef32806";
    assert_eq!(
        v52.identify(md5).err().unwrap().to_string(),
        "Unknown password hashing algorithm 'md5'. Did you specify it in the PASSWORD_HASHERS setting?"
    );
    assert!(!v52.verify_password(Some(PW), md5).valid);
}

#[test]
fn unusable_and_garbage_never_verify() {
    let hashers = all_hashers(DjangoVersion::V5_2);
    let unusable = make_unusable_password();
    assert_eq!(unusable.len(), 41);
    assert!(!is_password_usable(&unusable));
    assert!(!is_password_usable("!"));
    for encoded in [
        unusable.as_str(),
        "!",
        "",
        "$",
        "pbkdf2_sha256$",
        "pbkdf2_sha256$x$y$z",
        "bcrypt$$2b$99$zzz",
        "argon2$argon2id$v=19$m=1,t=1,p=1$$",
        "scrypt$3$salt$8$1$h",
        "scrypt$1099511627776$s$8$1$h",
        "nonsense$a$b",
    ] {
        let r = hashers.verify_password(Some(PW), encoded);
        assert_eq!(
            r,
            Verification {
                valid: false,
                must_update: r.must_update
            },
            "{encoded:?}"
        );
        assert!(!r.valid, "{encoded:?}");
    }
    assert!(!hashers.verify_password(None, DJANGO_HASHES[1].1).valid);
}

#[test]
fn make_password_uses_preferred_and_fresh_salts() {
    let v42 = Hashers::django_default(DjangoVersion::V4_2);
    let a = v42.make_password(PW, None, None).unwrap();
    let b = v42.make_password(PW, None, None).unwrap();
    assert!(a.starts_with("pbkdf2_sha256$600000$"));
    assert_ne!(a, b);
    assert_eq!(a.split('$').nth(2).unwrap().len(), SALT_LENGTH);
    assert!(v42.verify_password(Some(PW), &a).valid);
    assert!(!v42.verify_password(Some(PW), &a).must_update);
    let bc = Hashers::from_setting(
        &["django.contrib.auth.hashers.BCryptSHA256PasswordHasher"],
        DjangoVersion::V5_2,
    )
    .unwrap();
    let enc = bc
        .make_password("é".repeat(100).as_str(), None, None)
        .unwrap();
    assert!(enc.starts_with("bcrypt_sha256$$2b$12$"));
    assert!(bc.verify_password(Some(&"é".repeat(100)), &enc).valid);
}

#[test]
fn bcrypt_refuses_long_passwords_like_bcrypt_5() {
    let h = BcryptHasher::plain();
    assert_eq!(
        h.encode(&"a".repeat(73), "$2b$04$abcdefghijklmnopqrstuu"),
        Err(HashError::PasswordTooLong)
    );
}

#[test]
fn bad_salts_are_refused() {
    for h in [
        &Pbkdf2Hasher::sha256(1) as &dyn PasswordHasher,
        &Md5Hasher,
        &ScryptHasher::new(1),
    ] {
        assert!(h.encode(PW, "").is_err());
        assert!(h.encode(PW, "a$b").is_err());
    }
    assert!(UnsaltedMd5Hasher.encode(PW, "x").is_err());
    assert!(CryptHasher.encode(PW, "abc").is_err());
}

#[test]
fn unknown_paths_name_the_setting() {
    let err = Hashers::from_setting(&["myapp.Hasher"], DjangoVersion::V5_2).unwrap_err();
    assert!(
        err.contains("PASSWORD_HASHERS") && err.contains("myapp.Hasher"),
        "{err}"
    );
}
