DROP TABLE djauth_login_failures;
