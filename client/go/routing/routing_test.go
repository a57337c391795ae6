package routing

import (
	"os"
	"path/filepath"
	"testing"
)

// vectorsPath is protos/routing_vectors.json of this checkout ($ROUTING_VECTORS overrides).
// go test runs in the package directory, which build.sh reaches through a GOPATH symlink:
// resolve it before walking up to the repository root.
func vectorsPath(t *testing.T) string {
	if p := os.Getenv("ROUTING_VECTORS"); p != "" {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.EvalSymlinks(wd)
	if err != nil {
		t.Fatal(err)
	}
	// client/go/routing → repository root.
	return filepath.Join(dir, "..", "..", "..", "protos", "routing_vectors.json")
}

func TestVectors(t *testing.T) {
	vectors, err := LoadVectors(vectorsPath(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vectors {
		if err := v.Check(); err != nil {
			t.Errorf("vector %d (%s, %q, %q): %v", i, v.Domain, v.Salt, v.Key, err)
		}
	}
	t.Logf("%d vectors checked", len(vectors))
}

func TestEdges(t *testing.T) {
	if got := BucketOf(0); got != 0 {
		t.Errorf("BucketOf(0) = %d", got)
	}
	if got := BucketOf(^uint64(0)); got != PPM-1 {
		t.Errorf("BucketOf(max) = %d, want %d", got, PPM-1)
	}
	if got := PositionOf(^uint64(0)); got >= 1 {
		t.Errorf("PositionOf(max) = %v, want < 1", got)
	}
	if _, err := Hash(DomainCanary, "salt", "\xff"); err == nil {
		t.Error("invalid UTF-8 key was hashed")
	}
	if _, err := Hash(DomainCanary, "a\x00b", "k"); err == nil {
		t.Error("salt with NUL was hashed")
	}
	if _, err := InCanary("s", "k", PPM+1); err == nil {
		t.Error("ppm above 1e6 was accepted")
	}
	for _, ppm := range []uint32{0, PPM} {
		in, err := InCanary("s", "k", ppm)
		if err != nil || in != (ppm == PPM) {
			t.Errorf("InCanary(ppm=%d) = %v, %v", ppm, in, err)
		}
	}
}
