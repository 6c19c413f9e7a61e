package events

// Fields of Skipcall's PublicUpdateContactDto, numbered for duplicate
// detection.
const (
	scFirstName = iota
	scLastName
	scEmail
	scCompany
	scCity
	scCountry
	scURL
	scLinkedinURL
	scLinkedinSalesURL
	scRole
	scAllowPhoneCalls
	scPhoneNumbers
	scCustomFields
)

// Bounds from the Skipcall seed.
const (
	scMaxName        = 100
	scMaxText        = 200
	scMinPhoneNumber = 1
	scMaxPhoneNumber = 20
)

// skipcallField returns the number of the PublicUpdateContactDto field
// name, or -1.
func skipcallField(name []byte) int {
	switch string(name) {
	case "firstName":
		return scFirstName
	case "lastName":
		return scLastName
	case "email":
		return scEmail
	case "company":
		return scCompany
	case "city":
		return scCity
	case "country":
		return scCountry
	case "url":
		return scURL
	case "linkedinUrl":
		return scLinkedinURL
	case "linkedinSalesUrl":
		return scLinkedinSalesURL
	case "role":
		return scRole
	case "allowPhoneCalls":
		return scAllowPhoneCalls
	case "phoneNumbers":
		return scPhoneNumbers
	case "customFields":
		return scCustomFields
	}
	return -1
}

// validateSkipcallPatch checks the members of a non-empty JSON object
// against Skipcall's PublicUpdateContactDto, with phone numbers in E.164 as
// the seed's prose requires and unknown fields rejected.
func validateSkipcallPatch(c *collector, it *patchMembers) {
	var seen uint16
	for {
		k, v, ok := it.next()
		if !ok {
			return
		}
		name := keyBytes(k)
		f := skipcallField(name)
		if f < 0 {
			c.add(patchField(name), "unknown field")
			continue
		}
		if seen&(1<<f) != 0 {
			c.add(patchField(name), "duplicate field")
			continue
		}
		seen |= 1 << f
		switch f {
		case scFirstName, scLastName:
			checkString(c, name, v, 1, scMaxName)
		case scCompany, scCity, scCountry, scRole:
			checkString(c, name, v, 0, scMaxText)
		case scAllowPhoneCalls:
			checkBool(c, name, v)
		case scPhoneNumbers:
			checkPhoneNumbers(c, v)
		case scCustomFields:
			checkCustomFields(c, v)
		default:
			checkString(c, name, v, 0, -1)
		}
	}
}

// checkPhoneNumbers checks Skipcall's phoneNumbers: 1..20 E.164 strings.
func checkPhoneNumbers(c *collector, v []byte) {
	const field = namePatch + ".phoneNumbers"
	if k := kindOf(v); k != kindArray {
		c.add(field, "must be an array of strings, not "+k.String())
		return
	}
	n := 0
	for it := newElements(v); ; n++ {
		el, ok := it.next()
		if !ok {
			break
		}
		if k := kindOf(el); k != kindString {
			c.add(indexed(field, n), "must be a string, not "+k.String())
		} else if !isE164(stringBytes(el)) {
			c.add(indexed(field, n), "must be an E.164 phone number such as +33612345678")
		}
	}
	if n < scMinPhoneNumber || n > scMaxPhoneNumber {
		c.add(field, "must hold 1 to 20 phone numbers")
	}
}

// checkCustomFields checks Skipcall's customFields: an object of strings
// with non-empty, distinct keys.
func checkCustomFields(c *collector, v []byte) {
	const field = namePatch + ".customFields"
	if k := kindOf(v); k != kindObject {
		c.add(field, "must be an object, not "+k.String())
		return
	}
	var keys keySet
	it := newMembers(v)
	for {
		k, val, ok := it.next()
		if !ok {
			return
		}
		name := keyBytes(k)
		switch {
		case len(name) == 0:
			c.add(field, "keys must not be empty")
		case keys.add(name):
			c.add(field+"."+string(name), "duplicate key")
		default:
			if p := stringProblem(val, 0, -1); p != "" {
				c.add(field+"."+string(name), p)
			}
		}
	}
}
