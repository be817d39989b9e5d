package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"

	"github.com/meterflow/meterflow/internal/apperr"
	"github.com/meterflow/meterflow/internal/auth"
	"github.com/meterflow/meterflow/internal/postgres"
)

// UsersCmd administers the people who sign in to the API.
type UsersCmd struct {
	Create UserCreateCmd `cmd:"" help:"Create a household or operator user."`
}

// UserCreateCmd creates a user.
type UserCreateCmd struct {
	Postgres  PostgresFlags `embed:""`
	Phone     string        `required:"" help:"Phone number the sign-in codes go to (E.164, or national for GB)."`
	Password  string        `required:"" env:"MF_USER_PASSWORD" help:"Password, 8 to 256 characters (${env}; prefer it to the flag, which other users of the machine can see)."`
	Role      string        `required:"" enum:"household,operator" help:"household or operator."`
	Household int64         `help:"Household id (household users only)."`
	ExistOK   bool          `name:"exist-ok" help:"Succeed without change when a user with this phone exists."`
}

// Run creates the user and prints its id.
func (c *UserCreateCmd) Run(ctx context.Context, log *slog.Logger) error {
	db, err := postgres.Open(ctx, c.Postgres.Config())
	if err != nil {
		return err
	}
	defer db.Close()
	// Creating a user sends no code, so the key only has to be valid.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	svc, err := auth.New(&postgres.Auth{DB: db}, &postgres.DevSMS{DB: db}, auth.Config{Key: key, Logger: log})
	if err != nil {
		return err
	}
	u, err := svc.CreateUser(ctx, auth.NewUser{Phone: c.Phone, Password: c.Password, Role: auth.Role(c.Role), HouseholdID: c.Household})
	if c.ExistOK && apperr.Is(err, apperr.Conflict) {
		fmt.Printf("user with phone %s exists\n", c.Phone)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("user %d: %s %s", u.ID, u.Role, u.Phone)
	if u.HouseholdID != 0 {
		fmt.Printf(" household %d", u.HouseholdID)
	}
	fmt.Println()
	return nil
}
