package cli

import (
	"errors"
	"strings"
)

// splitWords splits a command line into words as a POSIX shell would,
// without running one: words are separated by blanks; 'single quotes' keep
// everything; "double quotes" keep everything but \", \\, \$ and \`; a
// backslash outside quotes keeps the next character. There is no expansion
// of any kind. It exists so that -filter can take "sh -c '…'" in one flag.
func splitWords(s string) ([]string, error) {
	var (
		words   []string
		word    strings.Builder
		inWord  bool
		runes   = []rune(s)
		errOpen = errors.New("unterminated quote")
	)
	for i := 0; i < len(runes); i++ {
		switch r := runes[i]; {
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case r == '\'':
			inWord = true
			end := indexRune(runes, i+1, '\'')
			if end < 0 {
				return nil, errOpen
			}
			word.WriteString(string(runes[i+1 : end]))
			i = end
		case r == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(runes) {
					return nil, errOpen
				}
				if runes[i] == '"' {
					break
				}
				if runes[i] == '\\' && i+1 < len(runes) && strings.ContainsRune("\"\\$`", runes[i+1]) {
					i++
				}
				word.WriteRune(runes[i])
			}
		case r == '\\':
			inWord = true
			if i+1 < len(runes) {
				i++
				word.WriteRune(runes[i])
			}
		default:
			inWord = true
			word.WriteRune(r)
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

func indexRune(runes []rune, from int, r rune) int {
	for i := from; i < len(runes); i++ {
		if runes[i] == r {
			return i
		}
	}
	return -1
}
