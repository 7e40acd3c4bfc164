package token

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
)

// SigningKey is an Ed25519 key that signs access tokens, and the kid that
// names it in token headers and the JWKS.
type SigningKey struct {
	ID      string
	Private ed25519.PrivateKey
}

// NewSigningKey generates a key. Its ID is derived from the public key (see
// keyID), so the same key always has the same kid, whether it was generated
// here, loaded from USHER_JWT_KEY_FILE or opened from the database.
func NewSigningKey() (SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, fmt.Errorf("token: generate signing key: %w", err)
	}
	return SigningKey{ID: keyID(pub), Private: priv}, nil
}

// Public returns the key's public half, or nil if Private is not a valid
// Ed25519 private key.
func (k SigningKey) Public() ed25519.PublicKey {
	if len(k.Private) != ed25519.PrivateKeySize {
		return nil
	}
	return k.Private.Public().(ed25519.PublicKey)
}

// String keeps the private key out of logs when a SigningKey is printed.
func (k SigningKey) String() string { return fmt.Sprintf("token.SigningKey{ID: %q}", k.ID) }

// GoString does the same for %#v.
func (k SigningKey) GoString() string { return k.String() }

func (k SigningKey) valid() error {
	if k.ID == "" {
		return errors.New("token: signing key has no ID")
	}
	if len(k.Private) != ed25519.PrivateKeySize {
		return fmt.Errorf("token: signing key %s is %d bytes, want %d", k.ID, len(k.Private), ed25519.PrivateKeySize)
	}
	return nil
}

// keyID is base64url (unpadded) of the first 16 bytes of SHA-256 of the raw
// 32-byte public key: 22 characters, stable for a key, and 128 bits is far
// beyond any chance of two keys colliding.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// sealVersion is the first byte of every sealed key, so the format can change
// (another AEAD, a rotated secret) and old rows still be recognised.
const sealVersion = 1

// SealPrivate encrypts a signing key for storage: AES-256-GCM under the key
// derived from USHER_SECRET_KEY, with the kid as associated data, so a sealed
// key copied to another row's kid does not open.
//
// Layout: version byte 0x01 ‖ 12-byte random nonce ‖ ciphertext of the
// 32-byte Ed25519 seed ‖ 16-byte tag (61 bytes).
func (k Keys) SealPrivate(key SigningKey) ([]byte, error) {
	if !k.derived() {
		return nil, errors.New("token: seal: keys not derived")
	}
	if err := key.valid(); err != nil {
		return nil, fmt.Errorf("token: seal: %w", err)
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	// The seed is the canonical form of the key; the rest is recomputed.
	return aead.Seal([]byte{sealVersion}, nil, key.Private.Seed(), []byte(key.ID)), nil
}

// OpenPrivate decrypts what SealPrivate produced for kid. Anything that does
// not authenticate (wrong secret, wrong kid, altered bytes) is ErrDecrypt.
func (k Keys) OpenPrivate(kid string, sealed []byte) (ed25519.PrivateKey, error) {
	if !k.derived() {
		return nil, errors.New("token: open: keys not derived")
	}
	if len(sealed) == 0 || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: key %s: unknown format", ErrDecrypt, kid)
	}
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	seed, err := aead.Open(nil, nil, sealed[1:], []byte(kid))
	if err != nil {
		return nil, fmt.Errorf("%w: key %s", ErrDecrypt, kid)
	}
	if len(seed) != ed25519.SeedSize {
		// Authentic but not a seed: only a bug in a future writer gets here.
		return nil, fmt.Errorf("%w: key %s: %d-byte seed", ErrDecrypt, kid, len(seed))
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// aead is built per call: sealing happens on key creation and load only, and
// a fresh value needs no thought about sharing one across goroutines.
func (k Keys) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.seal)
	if err != nil {
		return nil, fmt.Errorf("token: sealing cipher: %w", err)
	}
	// Random nonces are safe here: one secret seals a handful of keys, far
	// below GCM's 2^32 messages per key.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("token: sealing cipher: %w", err)
	}
	return aead, nil
}

const pemType = "PRIVATE KEY" // PKCS #8, as `openssl genpkey -algorithm ed25519` writes

// MarshalPEM encodes the private key as a PKCS #8 PEM block, the format
// LoadKeyFile reads.
func (k SigningKey) MarshalPEM() ([]byte, error) {
	if err := k.valid(); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("token: marshal signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: der}), nil
}

// ParsePEM reads the first PEM block of data as a PKCS #8 Ed25519 private
// key. The kid is derived from the public key, as NewSigningKey does.
func ParsePEM(data []byte) (SigningKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return SigningKey{}, errors.New("token: no PEM block")
	}
	if block.Type != pemType {
		return SigningKey{}, fmt.Errorf("token: PEM block is %q, want %q (PKCS #8)", block.Type, pemType)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return SigningKey{}, fmt.Errorf("token: parse PKCS #8 key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return SigningKey{}, fmt.Errorf("token: key is %T, want Ed25519", key)
	}
	return SigningKey{ID: keyID(priv.Public().(ed25519.PublicKey)), Private: priv}, nil
}

// LoadKeyFile reads the PEM file USHER_JWT_KEY_FILE names.
func LoadKeyFile(path string) (SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return SigningKey{}, fmt.Errorf("token: read key file: %w", err)
	}
	k, err := ParsePEM(data)
	if err != nil {
		return SigningKey{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k as a PEM file readable by its owner only. It refuses
// to replace an existing file: overwriting a pinned key would invalidate
// every token it signed.
func WriteKeyFile(path string, k SigningKey) (err error) {
	data, err := k.MarshalPEM()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("token: write key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("token: write key file: %w", cerr)
		}
		if err != nil {
			os.Remove(path) // a half-written key file must not be loaded later
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("token: write key file: %w", err)
	}
	return f.Sync()
}

// JWKS renders public keys as a JSON Web Key Set (RFC 7517, RFC 8037), in
// kid order so the document is byte-for-byte stable across nodes and calls.
func JWKS(keys map[string]ed25519.PublicKey) ([]byte, error) {
	type jwk struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Use string `json:"use"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(keys))} // an empty set is [], not null
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		pub := keys[kid]
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("token: JWKS: key %s is %d bytes, want %d", kid, len(pub), ed25519.PublicKeySize)
		}
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(pub),
			Kid: kid,
			Alg: "EdDSA",
			Use: "sig",
		})
	}
	return json.Marshal(set)
}
