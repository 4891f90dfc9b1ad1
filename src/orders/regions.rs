//! The countries the demo ships to (by name) and the regions (states, provinces,
//! territories) of those whose addresses name one.

/// Countries the demo ships to, sorted by name as the form lists them: ISO 3166-1
/// alpha-2 code and name.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("AU", "Australia"),
    ("AT", "Austria"),
    ("BE", "Belgium"),
    ("CA", "Canada"),
    ("DK", "Denmark"),
    ("FI", "Finland"),
    ("FR", "France"),
    ("DE", "Germany"),
    ("IE", "Ireland"),
    ("IT", "Italy"),
    ("JP", "Japan"),
    ("NL", "Netherlands"),
    ("NZ", "New Zealand"),
    ("NO", "Norway"),
    ("PL", "Poland"),
    ("PT", "Portugal"),
    ("ES", "Spain"),
    ("SE", "Sweden"),
    ("CH", "Switzerland"),
    ("GB", "United Kingdom"),
    ("US", "United States"),
];

/// A country whose addresses name a region: its code, what the region is called
/// there, and its regions (code, name).
pub type CountryRegions = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The countries whose addresses name a region, with their regions: ISO 3166-2
/// code (country prefix included, so Washington and Western Australia differ)
/// and name, sorted by name.
pub const REGIONS: &[CountryRegions] = &[
    (
        "AU",
        "State or territory",
        &[
            ("AU-ACT", "Australian Capital Territory"),
            ("AU-NSW", "New South Wales"),
            ("AU-NT", "Northern Territory"),
            ("AU-QLD", "Queensland"),
            ("AU-SA", "South Australia"),
            ("AU-TAS", "Tasmania"),
            ("AU-VIC", "Victoria"),
            ("AU-WA", "Western Australia"),
        ],
    ),
    (
        "CA",
        "Province or territory",
        &[
            ("CA-AB", "Alberta"),
            ("CA-BC", "British Columbia"),
            ("CA-MB", "Manitoba"),
            ("CA-NB", "New Brunswick"),
            ("CA-NL", "Newfoundland and Labrador"),
            ("CA-NT", "Northwest Territories"),
            ("CA-NS", "Nova Scotia"),
            ("CA-NU", "Nunavut"),
            ("CA-ON", "Ontario"),
            ("CA-PE", "Prince Edward Island"),
            ("CA-QC", "Quebec"),
            ("CA-SK", "Saskatchewan"),
            ("CA-YT", "Yukon"),
        ],
    ),
    (
        "US",
        "State",
        &[
            ("US-AL", "Alabama"),
            ("US-AK", "Alaska"),
            ("US-AZ", "Arizona"),
            ("US-AR", "Arkansas"),
            ("US-CA", "California"),
            ("US-CO", "Colorado"),
            ("US-CT", "Connecticut"),
            ("US-DE", "Delaware"),
            ("US-DC", "District of Columbia"),
            ("US-FL", "Florida"),
            ("US-GA", "Georgia"),
            ("US-HI", "Hawaii"),
            ("US-ID", "Idaho"),
            ("US-IL", "Illinois"),
            ("US-IN", "Indiana"),
            ("US-IA", "Iowa"),
            ("US-KS", "Kansas"),
            ("US-KY", "Kentucky"),
            ("US-LA", "Louisiana"),
            ("US-ME", "Maine"),
            ("US-MD", "Maryland"),
            ("US-MA", "Massachusetts"),
            ("US-MI", "Michigan"),
            ("US-MN", "Minnesota"),
            ("US-MS", "Mississippi"),
            ("US-MO", "Missouri"),
            ("US-MT", "Montana"),
            ("US-NE", "Nebraska"),
            ("US-NV", "Nevada"),
            ("US-NH", "New Hampshire"),
            ("US-NJ", "New Jersey"),
            ("US-NM", "New Mexico"),
            ("US-NY", "New York"),
            ("US-NC", "North Carolina"),
            ("US-ND", "North Dakota"),
            ("US-OH", "Ohio"),
            ("US-OK", "Oklahoma"),
            ("US-OR", "Oregon"),
            ("US-PA", "Pennsylvania"),
            ("US-PR", "Puerto Rico"),
            ("US-RI", "Rhode Island"),
            ("US-SC", "South Carolina"),
            ("US-SD", "South Dakota"),
            ("US-TN", "Tennessee"),
            ("US-TX", "Texas"),
            ("US-UT", "Utah"),
            ("US-VT", "Vermont"),
            ("US-VA", "Virginia"),
            ("US-WA", "Washington"),
            ("US-WV", "West Virginia"),
            ("US-WI", "Wisconsin"),
            ("US-WY", "Wyoming"),
        ],
    ),
];

pub fn country_name(code: &str) -> &str {
    COUNTRIES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
        .unwrap_or(code)
}

/// The regions of a country whose addresses name one; `None` for the others.
pub(super) fn regions_of(country: &str) -> Option<&'static [(&'static str, &'static str)]> {
    REGIONS
        .iter()
        .find(|(c, _, _)| *c == country)
        .map(|(_, _, regions)| *regions)
}

/// A region's name from its ISO 3166-2 code; the code itself if unknown.
pub fn region_name(code: &str) -> &str {
    REGIONS
        .iter()
        .flat_map(|(_, _, regions)| regions.iter())
        .find(|(c, _)| *c == code)
        .map_or(code, |(_, name)| *name)
}
