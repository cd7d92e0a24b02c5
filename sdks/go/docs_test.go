package triopipe_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every Go code block of the README and of the docs page is part of a program in
// examples/, which the build compiles.
func TestDocumentedCodeIsInTheExamples(t *testing.T) {
	var examples []string
	err := filepath.WalkDir("examples", func(path string, _ os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".go") {
			var source []byte
			source, err = os.ReadFile(path)
			examples = append(examples, string(source))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	goBlock := regexp.MustCompile("(?s)```go\n(.*?)```")
	blocks := 0
	for _, page := range []string{"README.md", filepath.Join("..", "..", "docs", "sdk-go.md")} {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range goBlock.FindAllStringSubmatch(string(text), -1) {
			blocks++
			found := false
			for _, source := range examples {
				found = found || strings.Contains(source, block[1])
			}
			if !found {
				t.Errorf("%s: this code is in no file of examples/:\n%s", page, block[1])
			}
		}
	}
	if blocks == 0 {
		t.Error("found no Go code block: is the pattern still right?")
	}
}
