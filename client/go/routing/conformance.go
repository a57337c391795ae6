package routing

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// Vector is one entry of protos/routing_vectors.json.
type Vector struct {
	Domain    string  `json:"domain"`
	Salt      string  `json:"salt"`
	Key       string  `json:"key"`
	U64       string  `json:"u64"`
	Bucket    uint32  `json:"bucket"`
	Position  float64 `json:"position"`
	CanaryPPM uint32  `json:"canary_ppm"`
	InCanary  bool    `json:"in_canary"`
}

// LoadVectors reads a routing_vectors.json file.
func LoadVectors(path string) ([]Vector, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file struct {
		Vectors []Vector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(file.Vectors) == 0 {
		return nil, fmt.Errorf("%s: no vectors", path)
	}
	return file.Vectors, nil
}

// Check compares one vector with this implementation; nil when every field agrees.
func (v Vector) Check() error {
	want, err := strconv.ParseUint(v.U64, 10, 64)
	if err != nil {
		return fmt.Errorf("u64 %q: %w", v.U64, err)
	}
	got, err := Hash(v.Domain, v.Salt, v.Key)
	if err != nil {
		return err
	}
	var wrong []string
	if got.U64 != want {
		wrong = append(wrong, fmt.Sprintf("u64 %d != %d", got.U64, want))
	}
	if got.Bucket != v.Bucket {
		wrong = append(wrong, fmt.Sprintf("bucket %d != %d", got.Bucket, v.Bucket))
	}
	if got.Position != v.Position {
		wrong = append(wrong, fmt.Sprintf("position %v != %v", got.Position, v.Position))
	}
	if sel := got.Bucket < v.CanaryPPM; sel != v.InCanary {
		wrong = append(wrong, fmt.Sprintf("in_canary %v != %v", sel, v.InCanary))
	}
	if wrong != nil {
		return fmt.Errorf("%v", wrong)
	}
	return nil
}

// CheckFile checks every vector of a routing_vectors.json file: the number checked and one
// message per mismatching vector.
func CheckFile(path string) (int, []string, error) {
	vectors, err := LoadVectors(path)
	if err != nil {
		return 0, nil, err
	}
	var failures []string
	for i, v := range vectors {
		if err := v.Check(); err != nil {
			failures = append(failures, fmt.Sprintf("vector %d (%s, %q, %q): %v", i, v.Domain, v.Salt, v.Key, err))
		}
	}
	return len(vectors), failures, nil
}
