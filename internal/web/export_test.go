package web

// The test users and token, for the tests of package web_test (the pair
// of real agents) as well as this package's.
const (
	AdminPassword  = adminPassword
	ViewerPassword = viewerPassword
	OpsToken       = opsToken
)

var TestUserConfig = testUserConfig
