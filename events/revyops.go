package events

// Fields of RevyOps' PatchedContactPatchRequest, numbered for duplicate
// detection.
const (
	roEmail = iota
	roLinkedinURL
	roFirstName
	roLastName
	roCompanyID
	roOrigin
	roContactStatus
	roContactCustomFields
)

// roMaxFieldValue bounds a custom field value, as in the seed's
// ContactCustomFields schema.
const roMaxFieldValue = 2500

// revyOpsField returns the number of the PatchedContactPatchRequest field
// name, or -1.
func revyOpsField(name []byte) int {
	switch string(name) {
	case "email":
		return roEmail
	case "linkedin_url":
		return roLinkedinURL
	case "first_name":
		return roFirstName
	case "last_name":
		return roLastName
	case "company_id":
		return roCompanyID
	case "origin":
		return roOrigin
	case "contact_status":
		return roContactStatus
	case "contact_custom_fields":
		return roContactCustomFields
	}
	return -1
}

// validateRevyOpsPatch checks the members of a non-empty JSON object
// against RevyOps' PatchedContactPatchRequest, with company_id also
// accepting a domain name as the seed's prose says and unknown fields
// rejected.
func validateRevyOpsPatch(c *collector, it *patchMembers) {
	var seen uint8
	for {
		k, v, ok := it.next()
		if !ok {
			return
		}
		name := keyBytes(k)
		f := revyOpsField(name)
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
		case roCompanyID:
			if !validCompanyID(v) {
				c.add(patchField(name), "must be a positive integer, a domain name such as acme.com, or null")
			}
		case roContactCustomFields:
			checkContactCustomFields(c, v)
		default:
			checkString(c, name, v, 0, -1)
		}
	}
}

// validCompanyID reports whether v is a positive integer, a domain name
// string or null.
func validCompanyID(v []byte) bool {
	switch kindOf(v) {
	case kindNull:
		return true
	case kindNumber:
		return positiveIntProblem(v) == ""
	case kindString:
		return isDomain(stringBytes(v))
	}
	return false
}

// checkContactCustomFields checks RevyOps' contact_custom_fields: an array
// of ContactCustomFieldPatch objects.
func checkContactCustomFields(c *collector, v []byte) {
	const field = namePatch + ".contact_custom_fields"
	if k := kindOf(v); k != kindArray {
		c.add(field, "must be an array of objects, not "+k.String())
		return
	}
	it := newElements(v)
	for i := 0; ; i++ {
		el, ok := it.next()
		if !ok {
			return
		}
		checkContactCustomField(c, field, i, el)
	}
}

// checkContactCustomField checks element i of contact_custom_fields:
// {"field_name": non-empty string, "field_value": string of at most 2500
// characters or null}, nothing else.
func checkContactCustomField(c *collector, base string, i int, el []byte) {
	if k := kindOf(el); k != kindObject {
		c.add(indexed(base, i), "must be an object, not "+k.String())
		return
	}
	path := func(name []byte) string { return indexed(base, i) + "." + string(name) }
	var haveName, haveValue bool
	it := newMembers(el)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		name := keyBytes(k)
		switch string(name) {
		case "field_name":
			if haveName {
				c.add(path(name), "duplicate field")
				continue
			}
			haveName = true
			if p := stringProblem(v, 1, -1); p != "" {
				if kindOf(v) == kindString {
					p = "must not be empty"
				}
				c.add(path(name), p)
			}
		case "field_value":
			if haveValue {
				c.add(path(name), "duplicate field")
				continue
			}
			haveValue = true
			if kindOf(v) == kindNull {
				continue
			}
			if k := kindOf(v); k != kindString {
				c.add(path(name), "must be a string or null, not "+k.String())
			} else if p := stringProblem(v, 0, roMaxFieldValue); p != "" {
				c.add(path(name), p)
			}
		default:
			c.add(path(name), "unknown field")
		}
	}
	if !haveName {
		c.add(indexed(base, i)+".field_name", "is required")
	}
}
