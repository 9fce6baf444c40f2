// Package identity normalises and hashes the ways a user is known (phone
// numbers, e-mail addresses) so that every dialect, and the profiles built
// from them, agree on one form.
package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Identity types on canonical events.
const (
	TypeEmailHash    = "email_hash"
	TypePhoneHash    = "phone_hash"
	TypeCustomUserID = "custom_user_id"
	TypeMetrixUserID = "metrix_user_id"
	TypeUserID       = "user_id"
	TypeAnonymousID  = "anonymous_id"
	TypeGAClientID   = "ga_client_id"
)

// Hash is SHA-256 as lowercase hex, the form hashed identities take.
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// IsHash reports whether s looks like Hash's output: 64 lowercase hex digits.
func IsHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ErrPhone is returned for a string that is not a valid phone number.
var ErrPhone = errors.New("not a valid phone number")

// NormalizePhone parses a phone number, in region (ISO 3166-1 alpha-2, e.g.
// "IR") when it has no country code, and returns it as international digits
// without '+': "+7 (999) 000-00-00" → "79990000000"; "09121122333" in IR →
// "989121122333".
func NormalizePhone(raw, region string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" || strings.IndexFunc(raw, notPhoneRune) >= 0 {
		return "", ErrPhone
	}
	if strings.HasPrefix(raw, "00") {
		raw = "+" + raw[2:]
	}
	n, err := phonenumbers.Parse(raw, strings.ToUpper(region))
	if err != nil {
		if !strings.HasPrefix(raw, "+") && region == "" {
			return "", fmt.Errorf("%w: no country code; write it as +<code>… or set the region", ErrPhone)
		}
		return "", fmt.Errorf("%w: %v", ErrPhone, err)
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", fmt.Errorf("%w: no such number in %s's numbering plan", ErrPhone, phonenumbers.GetRegionCodeForNumber(n))
	}
	return strings.TrimPrefix(phonenumbers.Format(n, phonenumbers.E164), "+"), nil
}

// notPhoneRune is true for characters a written phone number never has
// (letters, which libphonenumber would read as a keypad, '*', '#').
func notPhoneRune(r rune) bool {
	return !(r >= '0' && r <= '9' || strings.ContainsRune(" +-().\u00a0/", r))
}

// HashPhone normalises a phone number and hashes it.
func HashPhone(raw, region string) (string, error) {
	n, err := NormalizePhone(raw, region)
	if err != nil {
		return "", err
	}
	return Hash(n), nil
}

// ErrEmail is returned for a string that is not an e-mail address.
var ErrEmail = errors.New("not a valid e-mail address")

// NormalizeEmail trims and lower-cases an address, checking its syntax.
func NormalizeEmail(raw string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(raw))
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || !strings.Contains(e, "@") {
		return "", ErrEmail
	}
	return e, nil
}

// HashEmail normalises an e-mail address and hashes it.
func HashEmail(raw string) (string, error) {
	e, err := NormalizeEmail(raw)
	if err != nil {
		return "", err
	}
	return Hash(e), nil
}

// ValidRegion reports whether region is a region libphonenumber knows.
func ValidRegion(region string) bool {
	return phonenumbers.GetCountryCodeForRegion(strings.ToUpper(region)) != 0
}
