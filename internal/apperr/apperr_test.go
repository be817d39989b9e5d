package apperr

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCodeOf(t *testing.T) {
	assert.Equal(t, Code(""), CodeOf(nil))
	assert.Equal(t, Internal, CodeOf(errors.New("boom")))
	wrapped := fmt.Errorf("load meter: %w", New(NotFound, "meter %q", "M1"))
	assert.Equal(t, NotFound, CodeOf(wrapped))
	assert.True(t, Is(wrapped, NotFound))
	assert.Equal(t, `invalid: phone: not a number`, Field("phone", "not a number").Error())
}
