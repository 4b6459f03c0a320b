"""Stock BOINC clients as Tessera volunteers (docs/boinc.md): their endpoints, accounts, keys and apps."""
