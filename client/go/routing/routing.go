// Package routing implements canaryserve's routing hash (docs/routing.md §2) bit for bit:
//
//	input    = UTF-8(domain) || 0x00 || UTF-8(salt) || 0x00 || UTF-8(key)
//	u        = first 8 bytes of SHA-256(input), unsigned big-endian
//	bucket   = (u * 1_000_000) >> 64      (high word of the 128-bit product)
//	position = (u >> 11) * 2^-53          (exact double, < 1.0)
//
// Selection is anchored at zero: a key is in the canary (or the shadow sample) iff
// bucket < ppm.
package routing

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"
)

// PPM is 100 % in parts per million.
const PPM = 1_000_000

// The two hash domains: independent draws for the canary split and for shadow sampling.
const (
	DomainCanary = "canary"
	DomainShadow = "shadow"
)

// Draw is one hash draw of (domain, salt, key).
type Draw struct {
	U64      uint64
	Bucket   uint32  // 0 ≤ Bucket ≤ 999_999
	Position float64 // 0 ≤ Position < 1
}

// U64 is the draw's 64-bit value. Domain, salt and key must be valid UTF-8 (Go strings are
// bytes: invalid text is rejected rather than hashed), and domain and salt must not
// contain NUL.
func U64(domain, salt, key string) (uint64, error) {
	for _, f := range []struct{ name, value string }{{"domain", domain}, {"salt", salt}, {"key", key}} {
		if !utf8.ValidString(f.value) {
			return 0, fmt.Errorf("routing: %s is not valid UTF-8", f.name)
		}
	}
	if strings.ContainsRune(domain, 0) || strings.ContainsRune(salt, 0) {
		return 0, fmt.Errorf("routing: domain and salt must not contain NUL")
	}
	sum := sha256.Sum256([]byte(domain + "\x00" + salt + "\x00" + key))
	return binary.BigEndian.Uint64(sum[:8]), nil
}

// BucketOf is floor(u * 10^6 / 2^64), computed exactly.
func BucketOf(u uint64) uint32 {
	hi, _ := bits.Mul64(u, PPM)
	return uint32(hi)
}

// PositionOf is (u >> 11) * 2^-53: exact, identical in every language, below 1.0.
func PositionOf(u uint64) float64 {
	return float64(u>>11) * 0x1p-53
}

// Hash returns the draw of (domain, salt, key).
func Hash(domain, salt, key string) (Draw, error) {
	u, err := U64(domain, salt, key)
	if err != nil {
		return Draw{}, err
	}
	return Draw{U64: u, Bucket: BucketOf(u), Position: PositionOf(u)}, nil
}

func selected(domain, salt, key string, ppm uint32) (bool, error) {
	if ppm > PPM {
		return false, fmt.Errorf("routing: ppm %d is above %d", ppm, PPM)
	}
	d, err := Hash(domain, salt, key)
	if err != nil {
		return false, err
	}
	return d.Bucket < ppm, nil
}

// InCanary tells whether the candidate serves key at canary weight canaryPPM.
func InCanary(salt, key string, canaryPPM uint32) (bool, error) {
	return selected(DomainCanary, salt, key, canaryPPM)
}

// ShadowSampled tells whether a stable-served key is mirrored at shadow rate shadowPPM.
func ShadowSampled(salt, key string, shadowPPM uint32) (bool, error) {
	return selected(DomainShadow, salt, key, shadowPPM)
}
