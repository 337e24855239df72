# Every test runs under ctest: C unit tests, busted specs (unit and
# integration, against the real binary) and the differential test
# against the official Node SDK.

# One program per C test file, spec/c/test_NAME.c, run as c_NAME.
foreach(name core http_client sqlite pg metrics watcher json)
  add_executable(test_${name} spec/c/test_${name}.c)
  target_link_libraries(test_${name} PRIVATE abcore)
  add_test(NAME c_${name} COMMAND test_${name})
endforeach()

find_program(BUSTED busted REQUIRED)
set(AB_SPEC_ENV
  "AUTHKIT_BROKER_BIN=$<TARGET_FILE:authkit-broker>"
  "AUTHKIT_BROKER_ROOT=${CMAKE_SOURCE_DIR}"
  "AUTHKIT_BROKER_SANITIZED=${AB_SANITIZE}")

add_test(NAME lua_unit
  COMMAND ${BUSTED} --run=unit -o utfTerminal
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

add_test(NAME lua_integration
  COMMAND ${BUSTED} --run=integration -o utfTerminal
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua_integration PROPERTIES
  ENVIRONMENT "${AB_SPEC_ENV}" TIMEOUT 900)

find_program(NODE node REQUIRED)
add_test(NAME browser_demo
  COMMAND ${NODE} --test spec/browser/demo.test.mjs
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(browser_demo PROPERTIES
  ENVIRONMENT "${AB_SPEC_ENV}" TIMEOUT 300)

add_test(NAME style COMMAND bash scripts/check-style.sh
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
