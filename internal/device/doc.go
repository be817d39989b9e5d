// Package device owns meter identity: provisioning a meter with a device
// token (shown once, stored only as a hash), revoking it, and authenticating
// it when it connects, through a cache so that a reconnect storm of a whole
// fleet does not become a storm of database queries.
package device
