// Command crypto is a crypto coprocessor: AES-256-GCM encryption and
// Ed25519 signatures with keys that only the gateway's configuration
// holds, so the clients never see them.
//
// The gateway mounts it at /crypto. Binary data travels as standard
// base64; texts may be sent as UTF-8 strings instead:
//
//   - POST /crypto/encrypt {"plaintext":"hello"} (or "plaintext_base64",
//     and optional "aad", associated data that must be given again to
//     decrypt) answers {"ciphertext":"..."}: base64 of a random 12-byte
//     nonce, the ciphertext and the 16-byte tag.
//   - POST /crypto/decrypt {"ciphertext":"...","aad":"..."} answers
//     {"plaintext":"hello"}, or {"plaintext_base64":"..."} when the
//     plaintext is not UTF-8. A ciphertext that was changed, or made with
//     another key or other associated data, is refused with 400.
//   - POST /crypto/sign {"message":"..."} (or "message_base64") answers
//     {"signature":"...","public_key":"..."}.
//   - POST /crypto/verify {"message":"...","signature":"..."} answers
//     {"valid":true} or {"valid":false}; "public_key" checks against
//     another key than the module's.
//   - GET /crypto/public-key answers {"algorithm":"Ed25519","public_key":"..."}.
//
// Malformed requests (bad JSON or base64, a ciphertext too short to hold
// a nonce and a tag, a signature that is not 64 bytes) are answered with
// 400. The keys are the secrets aes_key (64 hex digits: 32 bytes) and
// ed25519_seed (64 hex digits: the 32-byte seed), read with
// shanhai.Config; a missing or malformed secret is answered with 500,
// naming the secret and never showing its value:
//
//	[modules.crypto.secrets]
//	aes_key = "${CRYPTO_AES_KEY}"
//	ed25519_seed = "${CRYPTO_ED25519_SEED}"
//
// The module needs no grant.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o crypto.wasm .
package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"unicode/utf8"

	shanhai "github.com/shanhai-edge/shanhai/sdk/go"
)

// maxBody bounds requests.
const maxBody = 1 << 20

func init() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /crypto/encrypt", encrypt)
	mux.HandleFunc("POST /crypto/decrypt", decrypt)
	mux.HandleFunc("POST /crypto/sign", sign)
	mux.HandleFunc("POST /crypto/verify", verify)
	mux.HandleFunc("GET /crypto/public-key", publicKey)
	shanhai.HandleHTTP(mux)
}

// main is empty: the gateway calls the module's exports, not main.
func main() {}

// Request is the body of every POST; each endpoint uses some fields.
type Request struct {
	Plaintext       *string `json:"plaintext"`
	PlaintextBase64 *string `json:"plaintext_base64"`
	AAD             string  `json:"aad"`
	Ciphertext      string  `json:"ciphertext"`
	Message         *string `json:"message"`
	MessageBase64   *string `json:"message_base64"`
	Signature       string  `json:"signature"`
	PublicKey       string  `json:"public_key"`
}

// clientError is a problem with the request: 400.
type clientError struct{ msg string }

func (e *clientError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &clientError{fmt.Sprintf(format, args...)}
}

// secretError is a missing or malformed secret: 500.
type secretError struct{ msg string }

func (e *secretError) Error() string { return e.msg }

// secret reads the secret name as hex of exactly n bytes.
func secret(name string, n int) ([]byte, error) {
	v, err := shanhai.Config(name)
	if errors.Is(err, shanhai.ErrNotFound) || (err == nil && v == "") {
		return nil, &secretError{fmt.Sprintf("the secret %s is not set (add it to [modules.crypto.secrets])", name)}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the secret %s: %w", name, err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil || len(key) != n {
		// Not err's text: hex's errors quote the offending character,
		// which is part of the secret.
		return nil, &secretError{fmt.Sprintf("the secret %s must be %d hex digits (%d bytes)", name, 2*n, n)}
	}
	return key, nil
}

// aead returns AES-256-GCM with the key from the secret aes_key.
func aead() (cipher.AEAD, error) {
	key, err := secret("aes_key", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// signer caches the private key derived from the seed it was made from:
// deriving one costs a scalar multiplication, and the seed changes only
// with the configuration (which starts new instances anyway).
var signer struct {
	seed string
	key  ed25519.PrivateKey
}

// signingKey returns the Ed25519 key from the secret ed25519_seed.
func signingKey() (ed25519.PrivateKey, error) {
	seed, err := secret("ed25519_seed", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	if signer.key == nil || signer.seed != string(seed) {
		signer.seed, signer.key = string(seed), ed25519.NewKeyFromSeed(seed)
	}
	return signer.key, nil
}

func encrypt(w http.ResponseWriter, r *http.Request) {
	handle(w, r, func(req *Request) (any, error) {
		plaintext, err := textOrBase64("plaintext", req.Plaintext, req.PlaintextBase64)
		if err != nil {
			return nil, err
		}
		gcm, err := aead()
		if err != nil {
			return nil, err
		}
		// A random 96-bit nonce per message: safe for about 2^32 messages
		// under one key, far beyond what a deployment sends before it
		// rotates.
		nonce := make([]byte, gcm.NonceSize(), gcm.NonceSize()+len(plaintext)+gcm.Overhead())
		rand.Read(nonce) // never fails: Go 1.24 crashes rather than return an error
		sealed := gcm.Seal(nonce, nonce, plaintext, []byte(req.AAD))
		return map[string]string{"ciphertext": base64.StdEncoding.EncodeToString(sealed)}, nil
	})
}

func decrypt(w http.ResponseWriter, r *http.Request) {
	handle(w, r, func(req *Request) (any, error) {
		sealed, err := decodeBase64("ciphertext", req.Ciphertext)
		if err != nil {
			return nil, err
		}
		gcm, err := aead()
		if err != nil {
			return nil, err
		}
		if shortest := gcm.NonceSize() + gcm.Overhead(); len(sealed) < shortest {
			return nil, badRequest("ciphertext: %d bytes is shorter than a nonce and a tag (%d bytes)", len(sealed), shortest)
		}
		nonce, body := sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():]
		plaintext, err := gcm.Open(nil, nonce, body, []byte(req.AAD))
		if err != nil {
			// GCM cannot tell these apart, by design.
			return nil, badRequest("decryption failed: the ciphertext was changed, or was made with another key or other associated data")
		}
		if utf8.Valid(plaintext) {
			return map[string]string{"plaintext": string(plaintext)}, nil
		}
		return map[string]string{"plaintext_base64": base64.StdEncoding.EncodeToString(plaintext)}, nil
	})
}

func sign(w http.ResponseWriter, r *http.Request) {
	handle(w, r, func(req *Request) (any, error) {
		message, err := textOrBase64("message", req.Message, req.MessageBase64)
		if err != nil {
			return nil, err
		}
		key, err := signingKey()
		if err != nil {
			return nil, err
		}
		return map[string]string{
			"signature":  base64.StdEncoding.EncodeToString(ed25519.Sign(key, message)),
			"public_key": base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		}, nil
	})
}

func verify(w http.ResponseWriter, r *http.Request) {
	handle(w, r, func(req *Request) (any, error) {
		message, err := textOrBase64("message", req.Message, req.MessageBase64)
		if err != nil {
			return nil, err
		}
		sig, err := decodeBase64("signature", req.Signature)
		if err != nil {
			return nil, err
		}
		if len(sig) != ed25519.SignatureSize {
			return nil, badRequest("signature: %d bytes, an Ed25519 signature is %d", len(sig), ed25519.SignatureSize)
		}
		var pub ed25519.PublicKey
		if req.PublicKey != "" {
			if pub, err = decodeBase64("public_key", req.PublicKey); err != nil {
				return nil, err
			}
			if len(pub) != ed25519.PublicKeySize {
				return nil, badRequest("public_key: %d bytes, an Ed25519 public key is %d", len(pub), ed25519.PublicKeySize)
			}
		} else {
			key, err := signingKey()
			if err != nil {
				return nil, err
			}
			pub = key.Public().(ed25519.PublicKey)
		}
		// A signature that does not match is an answer, not an error.
		return map[string]bool{"valid": ed25519.Verify(pub, message, sig)}, nil
	})
}

func publicKey(w http.ResponseWriter, _ *http.Request) {
	key, err := signingKey()
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"algorithm":  "Ed25519",
		"public_key": base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
	})
}

// handle decodes the request, runs op and writes its result or error.
func handle(w http.ResponseWriter, r *http.Request, op func(*Request) (any, error)) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxBody))
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "the body is not a JSON request: "+err.Error())
		return
	}
	out, err := op(&req)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func fail(w http.ResponseWriter, err error) {
	var ce *clientError
	if errors.As(err, &ce) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	slog.Error("crypto", "err", err)
	writeError(w, http.StatusInternalServerError, err.Error())
}

// textOrBase64 returns the data given as exactly one of a UTF-8 text and
// base64.
func textOrBase64(name string, text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, badRequest("give %s or %s_base64, not both", name, name)
	case text != nil:
		return []byte(*text), nil
	case b64 != nil:
		return decodeBase64(name+"_base64", *b64)
	}
	return nil, badRequest("%s (or %s_base64) is missing", name, name)
}

func decodeBase64(name, s string) ([]byte, error) {
	if s == "" {
		return nil, badRequest("%s is missing", name)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, badRequest("%s is not base64: %v", name, err)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, map[string]string{"error": message})
}
