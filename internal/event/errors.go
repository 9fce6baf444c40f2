package event

import "strings"

// FieldError is one violation, located by the path of the offending field
// in the request, e.g. "event.transaction.lineItems[1].quantity".
type FieldError struct {
	// Index, when set, is the position of the failing item in a batch.
	Index   *int   `json:"index,omitempty"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (f FieldError) Error() string {
	if f.Path == "" {
		return f.Message
	}
	return f.Path + ": " + f.Message
}

// FieldErrors is every violation found in one request, in the order found.
type FieldErrors []FieldError

// Add records a violation at path.
func (fs *FieldErrors) Add(path, message string) {
	*fs = append(*fs, FieldError{Path: path, Message: message})
}

func (fs FieldErrors) Error() string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.Error()
	}
	return strings.Join(parts, "; ")
}

// AddAt records a violation of item index of a batch.
func (fs *FieldErrors) AddAt(index int, path, message string) {
	*fs = append(*fs, FieldError{Index: &index, Path: path, Message: message})
}

// Err returns fs as an error, or nil when there is no violation.
func (fs FieldErrors) Err() error {
	if len(fs) == 0 {
		return nil
	}
	return fs
}
