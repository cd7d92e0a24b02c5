package protocol_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/trio-pipe/trio-pipe/sdks/go/protocol"
)

// The shared test vectors of every SDK, generated from the Python codec.
var vectorDir = filepath.Join("..", "..", "..", "spec", "vectors")

func loadVectors[V any](t *testing.T, name string) []V {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var vectors []V
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(vectors) == 0 {
		t.Fatalf("%s holds no vectors", name)
	}
	return vectors
}

func reencode(t *testing.T, frame string) []byte {
	t.Helper()
	message, err := protocol.Decode([]byte(frame))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	text, err := protocol.Encode(message)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return text
}

func TestValidVectors(t *testing.T) {
	type vector struct {
		Name    string
		Message string
		Decoded json.RawMessage
	}
	for _, v := range loadVectors[vector](t, "valid.json") {
		t.Run(v.Name, func(t *testing.T) {
			text := reencode(t, v.Message)
			if string(text) != v.Message {
				t.Errorf("re-encoded differently\n got: %s\nwant: %s", text, v.Message)
			}
			var got, want any
			if err := json.Unmarshal(text, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v.Decoded, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("re-encoded value differs from decoded\n got: %v\nwant: %v", got, want)
			}
		})
	}
}

func TestLenientVectors(t *testing.T) {
	type vector struct{ Name, Input, Canonical string }
	for _, v := range loadVectors[vector](t, "lenient.json") {
		t.Run(v.Name, func(t *testing.T) {
			if text := reencode(t, v.Input); string(text) != v.Canonical {
				t.Errorf("\n got: %s\nwant: %s", text, v.Canonical)
			}
		})
	}
}

func TestInvalidVectors(t *testing.T) {
	type vector struct {
		Name           string
		Class          protocol.ErrorKind
		Input          string
		ReasonContains string `json:"reason_contains"`
	}
	for _, v := range loadVectors[vector](t, "invalid.json") {
		t.Run(v.Name, func(t *testing.T) {
			message, err := protocol.Decode([]byte(v.Input))
			var decodeErr *protocol.DecodeError
			if !errors.As(err, &decodeErr) {
				t.Fatalf("accepted as %#v (error %v)", message, err)
			}
			if decodeErr.Kind != v.Class {
				t.Errorf("kind %q, want %q (%s)", decodeErr.Kind, v.Class, decodeErr)
			}
			// The wording is ours; the path of the bad value is the protocol's.
			if _, path, ok := strings.Cut(v.ReasonContains, " @ "); ok && !strings.HasSuffix(decodeErr.Reason, " @ "+path) {
				t.Errorf("reason %q does not end with the path %s", decodeErr.Reason, path)
			}
		})
	}
}
