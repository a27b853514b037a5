# The date of this build, from the release date (UDS_ECHO_RELEASE_DATE, YYYY-MM-DD, set next to
# the version in the top CMakeLists.txt) or, when the environment sets it, from SOURCE_DATE_EPOCH
# (https://reproducible-builds.org/specs/source-date-epoch/). Read at configure time. Sets:
#   UDS_ECHO_SOURCE_DATE_EPOCH  seconds since 1970 (cpack dates every file of the .deb with it)
#   UDS_ECHO_DATE               YYYY-MM-DD (the man pages' .TH line)
#   UDS_ECHO_DATE_RFC2822       "Sun, 29 Nov 2026 00:00:00 +0000" (the Debian changelog)
if(NOT UDS_ECHO_RELEASE_DATE MATCHES "^([0-9][0-9][0-9][0-9])-([0-9][0-9])-([0-9][0-9])$")
  message(FATAL_ERROR "UDS_ECHO_RELEASE_DATE is \"${UDS_ECHO_RELEASE_DATE}\", not YYYY-MM-DD")
endif()
set(year "${CMAKE_MATCH_1}")
set(month "${CMAKE_MATCH_2}")
set(day "${CMAKE_MATCH_3}")
string(REGEX REPLACE "^0" "" month "${month}") # 08 is no octal number, but make sure
string(REGEX REPLACE "^0" "" day "${day}")

if(NOT "$ENV{SOURCE_DATE_EPOCH}" STREQUAL "")
  if(NOT "$ENV{SOURCE_DATE_EPOCH}" MATCHES "^[0-9]+$")
    message(FATAL_ERROR "SOURCE_DATE_EPOCH is \"$ENV{SOURCE_DATE_EPOCH}\", not a number of seconds")
  endif()
  set(UDS_ECHO_SOURCE_DATE_EPOCH "$ENV{SOURCE_DATE_EPOCH}")
else()
  # Days from 1970-01-01 to the release date, midnight UTC (the civil-calendar formula of
  # http://howardhinnant.github.io/date_algorithms.html#days_from_civil, for years from 1970).
  if(month LESS_EQUAL 2)
    math(EXPR year "${year} - 1")
    math(EXPR shifted_month "${month} + 9")
  else()
    math(EXPR shifted_month "${month} - 3")
  endif()
  math(EXPR year_of_era "${year} % 400")
  math(EXPR day_of_year "(153 * ${shifted_month} + 2) / 5 + ${day} - 1")
  math(EXPR UDS_ECHO_SOURCE_DATE_EPOCH
       "((${year} / 400) * 146097 + ${year_of_era} * 365 + ${year_of_era} / 4 - ${year_of_era} / 100
         + ${day_of_year} - 719468) * 86400")
endif()

# string(TIMESTAMP) formats SOURCE_DATE_EPOCH when it is set: set it for the two calls only.
set(saved_source_date_epoch "$ENV{SOURCE_DATE_EPOCH}")
set(ENV{SOURCE_DATE_EPOCH} "${UDS_ECHO_SOURCE_DATE_EPOCH}")
string(TIMESTAMP UDS_ECHO_DATE "%Y-%m-%d" UTC)
string(TIMESTAMP UDS_ECHO_DATE_RFC2822 "%a, %d %b %Y %H:%M:%S +0000" UTC)
if(saved_source_date_epoch STREQUAL "")
  unset(ENV{SOURCE_DATE_EPOCH})
else()
  set(ENV{SOURCE_DATE_EPOCH} "${saved_source_date_epoch}")
endif()
