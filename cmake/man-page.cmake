# Writes a man page with its .TH line dated and versioned: `cmake -DINPUT=docs/uds-echod.8
# -DOUTPUT=... -DVERSION=0.1.0 -DDATE=2026-11-29 -P man-page.cmake`. In the sources the .TH line
# says "@UDS_ECHO_DATE@" and "uds-echo @PROJECT_VERSION@" (`man -l` shows them as they are); the rest
# of the page is copied unchanged.
foreach(variable INPUT OUTPUT VERSION DATE)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "man-page.cmake: -D${variable}=... is missing")
  endif()
endforeach()
file(READ "${INPUT}" page)
if(NOT page MATCHES "(^|\n)(\\.TH [^\n]*)\n")
  message(FATAL_ERROR "${INPUT}: no .TH line")
endif()
set(title_line "${CMAKE_MATCH_2}")
string(REPLACE "@UDS_ECHO_DATE@" "${DATE}" dated_line "${title_line}")
string(REPLACE "@PROJECT_VERSION@" "${VERSION}" dated_line "${dated_line}")
if(dated_line MATCHES "@")
  message(FATAL_ERROR "${INPUT}: unknown @...@ in its .TH line: ${title_line}")
endif()
string(REPLACE "${title_line}" "${dated_line}" page "${page}")
file(WRITE "${OUTPUT}" "${page}")
