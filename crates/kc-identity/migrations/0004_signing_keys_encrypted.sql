-- Token signing keys are encrypted at rest under the key-encryption key given to kc-identity
-- (--key-encryption-key-file): private_key holds SecretKey::encrypt(seed, associated = kid),
-- i.e. version byte, 12-byte nonce, 32-byte ciphertext and 16-byte tag (61 bytes), and
-- encryption_key_id names the key that encrypted it (SecretKey::id()), so that a rotation of
-- the key-encryption key knows which rows to re-encrypt.
--
-- SQL cannot encrypt (the key is not in the database): rows written before this migration
-- keep their raw 32-byte seed with encryption_key_id NULL until kc-identity starts, which
-- encrypts them under the signing-key lock before it serves. No new raw row is written.
ALTER TABLE signing_keys
    DROP CONSTRAINT signing_keys_private_key_check,
    ADD COLUMN encryption_key_id text CHECK (encryption_key_id ~ '^[0-9a-f]{16}$'),
    ADD CONSTRAINT signing_keys_private_key_form CHECK (
        (encryption_key_id IS NULL AND length(private_key) = 32)
        OR (encryption_key_id IS NOT NULL AND length(private_key) = 61)
    );
