//go:build !wasm

// The tests run natively, against shanhaitest's mock host.

package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shanhai-edge/shanhai/sdk/go/shanhaitest"
)

// The key and seed of the tests; the seed is RFC 8032's test 1.
const (
	aesKey    = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	otherKey  = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	seedHex   = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	publicHex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	emptySig  = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

func start(t *testing.T) {
	t.Helper()
	shanhaitest.Reset()
	shanhaitest.SetConfig("aes_key", aesKey)
	shanhaitest.SetConfig("ed25519_seed", seedHex)
}

func do(t *testing.T, method, target string, body any) (int, map[string]any) {
	t.Helper()
	var text string
	switch b := body.(type) {
	case string:
		text = b
	case nil:
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		text = string(j)
	}
	resp, err := shanhaitest.Do(httptest.NewRequest(method, target, strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	var reply map[string]any
	if err := json.Unmarshal(raw, &reply); err != nil {
		t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, raw)
	}
	return resp.StatusCode, reply
}

// ok runs a request that must succeed and returns its reply.
func ok(t *testing.T, target string, body any) map[string]any {
	t.Helper()
	status, reply := do(t, "POST", target, body)
	if status != 200 {
		t.Fatalf("%s: %d %v", target, status, reply)
	}
	return reply
}

// refused runs a request that must fail with status and a message
// containing want.
func refused(t *testing.T, target string, body any, status int, want string) {
	t.Helper()
	got, reply := do(t, "POST", target, body)
	if msg, _ := reply["error"].(string); got != status || !strings.Contains(msg, want) {
		t.Errorf("%s %v: %d %v, want %d with %q", target, body, got, reply, status, want)
	}
}

func TestEncryptDecrypt(t *testing.T) {
	start(t)
	sealed := ok(t, "/crypto/encrypt", map[string]string{"plaintext": "山海 edge", "aad": "order-7"})["ciphertext"].(string)
	if got := ok(t, "/crypto/decrypt", map[string]string{"ciphertext": sealed, "aad": "order-7"}); got["plaintext"] != "山海 edge" {
		t.Errorf("decrypt: %v", got)
	}

	// The format is nonce ‖ ciphertext ‖ tag, as any AES-GCM library reads it.
	raw, _ := base64.StdEncoding.DecodeString(sealed)
	key, _ := hex.DecodeString(aesKey)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	if plain, err := gcm.Open(nil, raw[:12], raw[12:], []byte("order-7")); err != nil || string(plain) != "山海 edge" {
		t.Errorf("stdlib open: %q %v", plain, err)
	}
	if len(raw) != 12+len("山海 edge")+16 {
		t.Errorf("%d bytes", len(raw))
	}

	// A fresh nonce each time.
	again := ok(t, "/crypto/encrypt", map[string]string{"plaintext": "山海 edge", "aad": "order-7"})["ciphertext"]
	if again == sealed {
		t.Error("two encryptions gave the same ciphertext")
	}

	// Binary data in and out.
	bin := base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, 0xfe})
	sealed = ok(t, "/crypto/encrypt", map[string]string{"plaintext_base64": bin})["ciphertext"].(string)
	if got := ok(t, "/crypto/decrypt", map[string]string{"ciphertext": sealed}); got["plaintext_base64"] != bin || got["plaintext"] != nil {
		t.Errorf("binary: %v", got)
	}
}

func TestDecryptRefusals(t *testing.T) {
	start(t)
	sealed := ok(t, "/crypto/encrypt", map[string]string{"plaintext": "secret plan", "aad": "a"})["ciphertext"].(string)
	raw, _ := base64.StdEncoding.DecodeString(sealed)
	const failed = "decryption failed: the ciphertext was changed, or was made with another key or other associated data"
	// A bit flipped in the nonce, the ciphertext and the tag.
	for _, i := range []int{0, 12, len(raw) - 1} {
		tampered := append([]byte(nil), raw...)
		tampered[i] ^= 0x01
		refused(t, "/crypto/decrypt", map[string]string{"ciphertext": base64.StdEncoding.EncodeToString(tampered), "aad": "a"}, 400, failed)
	}
	refused(t, "/crypto/decrypt", map[string]string{"ciphertext": sealed, "aad": "b"}, 400, failed)
	refused(t, "/crypto/decrypt", map[string]string{"ciphertext": sealed}, 400, failed)
	refused(t, "/crypto/decrypt", map[string]string{"ciphertext": base64.StdEncoding.EncodeToString(raw[:27])}, 400, "27 bytes is shorter than a nonce and a tag (28 bytes)")
	refused(t, "/crypto/decrypt", map[string]string{"ciphertext": "***"}, 400, "ciphertext is not base64")
	refused(t, "/crypto/decrypt", map[string]string{}, 400, "ciphertext is missing")

	// The key was rotated: the old ciphertext no longer opens.
	shanhaitest.SetConfig("aes_key", otherKey)
	refused(t, "/crypto/decrypt", map[string]string{"ciphertext": sealed, "aad": "a"}, 400, failed)
}

func TestSignVerify(t *testing.T) {
	start(t)
	// RFC 8032, test 1: the empty message.
	got := ok(t, "/crypto/sign", map[string]string{"message": ""})
	sig, _ := base64.StdEncoding.DecodeString(got["signature"].(string))
	pub, _ := base64.StdEncoding.DecodeString(got["public_key"].(string))
	if hex.EncodeToString(sig) != emptySig || hex.EncodeToString(pub) != publicHex {
		t.Errorf("sign: %x %x", sig, pub)
	}
	status, got := do(t, "GET", "/crypto/public-key", nil)
	if status != 200 || got["algorithm"] != "Ed25519" || got["public_key"] != base64.StdEncoding.EncodeToString(pub) {
		t.Errorf("GET public-key: %d %v", status, got)
	}

	msg := base64.StdEncoding.EncodeToString([]byte("pay 10 to bob\x00"))
	sigB64 := ok(t, "/crypto/sign", map[string]string{"message_base64": msg})["signature"].(string)
	if got := ok(t, "/crypto/verify", map[string]string{"message_base64": msg, "signature": sigB64}); got["valid"] != true {
		t.Errorf("verify: %v", got)
	}
	forged := base64.StdEncoding.EncodeToString([]byte("pay 99 to bob\x00"))
	if got := ok(t, "/crypto/verify", map[string]string{"message_base64": forged, "signature": sigB64}); got["valid"] != false {
		t.Errorf("verify of another message: %v", got)
	}

	// Another signer's key.
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	otherSig := base64.StdEncoding.EncodeToString(ed25519.Sign(other, []byte("hi")))
	otherPub := base64.StdEncoding.EncodeToString(other.Public().(ed25519.PublicKey))
	if got := ok(t, "/crypto/verify", map[string]string{"message": "hi", "signature": otherSig, "public_key": otherPub}); got["valid"] != true {
		t.Errorf("verify with public_key: %v", got)
	}
	if got := ok(t, "/crypto/verify", map[string]string{"message": "hi", "signature": otherSig}); got["valid"] != false {
		t.Errorf("another signer's signature against the module's key: %v", got)
	}

	refused(t, "/crypto/verify", map[string]string{"message": "hi", "signature": "AAAA"}, 400, "signature: 3 bytes, an Ed25519 signature is 64")
	refused(t, "/crypto/verify", map[string]string{"message": "hi", "signature": otherSig, "public_key": "AAAA"}, 400, "public_key: 3 bytes, an Ed25519 public key is 32")
	refused(t, "/crypto/verify", map[string]string{"message": "hi"}, 400, "signature is missing")
}

func TestBadRequests(t *testing.T) {
	start(t)
	refused(t, "/crypto/encrypt", `{"plaintext":`, 400, "the body is not a JSON request")
	refused(t, "/crypto/encrypt", `{"plain":"x"}`, 400, `unknown field "plain"`)
	refused(t, "/crypto/encrypt", `{}`, 400, "plaintext (or plaintext_base64) is missing")
	refused(t, "/crypto/encrypt", `{"plaintext":"a","plaintext_base64":"YQ=="}`, 400, "give plaintext or plaintext_base64, not both")
	refused(t, "/crypto/sign", `{"message_base64":"%%"}`, 400, "message_base64 is not base64")
	refused(t, "/crypto/sign", strings.Repeat(" ", maxBody+1), 413, "larger than")
}

// A missing or malformed secret is the deployment's mistake: 500, naming
// the secret and never showing its value.
func TestSecrets(t *testing.T) {
	for _, tc := range []struct {
		target, secret, value, want string
	}{
		{"/crypto/encrypt", "aes_key", "", "the secret aes_key is not set (add it to [modules.crypto.secrets])"},
		{"/crypto/encrypt", "aes_key", "zz" + aesKey[2:], "the secret aes_key must be 64 hex digits (32 bytes)"},
		{"/crypto/decrypt", "aes_key", aesKey[:32], "the secret aes_key must be 64 hex digits (32 bytes)"},
		{"/crypto/sign", "ed25519_seed", "", "the secret ed25519_seed is not set (add it to [modules.crypto.secrets])"},
		{"/crypto/sign", "ed25519_seed", seedHex + "00", "the secret ed25519_seed must be 64 hex digits (32 bytes)"},
		{"/crypto/verify", "ed25519_seed", "", "the secret ed25519_seed is not set (add it to [modules.crypto.secrets])"},
	} {
		start(t)
		if tc.value == "" {
			shanhaitest.UnsetConfig(tc.secret)
		} else {
			shanhaitest.SetConfig(tc.secret, tc.value)
		}
		// Every field an endpoint reads, well formed: only the secret is wrong.
		body := map[string]string{
			"plaintext": "x", "message": "x",
			"signature":  base64.StdEncoding.EncodeToString(make([]byte, 64)),
			"ciphertext": base64.StdEncoding.EncodeToString(make([]byte, 40)),
		}
		status, reply := do(t, "POST", tc.target, body)
		msg, _ := reply["error"].(string)
		if status != 500 || msg != tc.want {
			t.Errorf("%s with %s=%q: %d %q, want 500 %q", tc.target, tc.secret, tc.value, status, msg, tc.want)
		}
		if tc.value != "" && strings.Contains(msg, tc.value[:8]) {
			t.Errorf("the message shows the secret: %s", msg)
		}
		for _, l := range shanhaitest.Logs() {
			if tc.value != "" && strings.Contains(l.Text, tc.value[:8]) {
				t.Errorf("a log line shows the secret: %s", l.Text)
			}
		}
	}
	start(t)
	shanhaitest.UnsetConfig("ed25519_seed")
	if status, reply := do(t, "GET", "/crypto/public-key", nil); status != 500 || !strings.Contains(reply["error"].(string), "ed25519_seed is not set") {
		t.Errorf("public-key: %d %v", status, reply)
	}
}
